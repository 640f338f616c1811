"""API keys and the audit log moved to accounts (accounts 0001 took them over): they leave profiles'
migration state only; their tables stay, now accounts'."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("profiles", "0013_merge_security_round"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="ApiKey"),
                migrations.DeleteModel(name="AuditEntry"),
            ],
        ),
    ]
