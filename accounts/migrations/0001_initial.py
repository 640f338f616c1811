"""API keys and the audit log move from profiles to accounts: the models are created in the migration
state only, over the tables profiles created (profiles_apikey, profiles_auditentry, their indexes
and constraints), which stay as they are. profiles 0014 removes them from profiles' state."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import accounts.actions


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("profiles", "0013_merge_security_round"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='ApiKey',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(help_text="Who uses it, e.g. 'shop backend (production)'.", max_length=100)),
                        ('prefix', models.CharField(help_text="The key's public part, to recognise it in lists and logs.", max_length=12, unique=True)),
                        ('hashed_secret', models.CharField(max_length=128)),
                        ('scopes', models.JSONField(default=list, help_text='What the key may do.')),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_used_at', models.DateTimeField(blank=True, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'API key',
                        'db_table': 'profiles_apikey',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='AuditEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('actor_label', models.CharField(help_text="The operator's username, api-key:PREFIX, shell:USER or system; kept if the account goes.", max_length=150)),
                        ('action', models.CharField(choices=accounts.actions.audit_action_choices, max_length=40)),
                        ('source', models.CharField(help_text='admin, api, shell, schedule, system', max_length=20)),
                        ('target_type', models.CharField(blank=True, max_length=60)),
                        ('target_id', models.CharField(blank=True, max_length=64)),
                        ('target_label', models.CharField(blank=True, max_length=200)),
                        ('changes', models.JSONField(blank=True, default=dict)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'audit entry',
                        'verbose_name_plural': 'audit log',
                        'db_table': 'profiles_auditentry',
                        'ordering': ['-at', '-id'],
                        'indexes': [models.Index(fields=['action', '-at'], name='audit_action_at_idx'), models.Index(fields=['target_type', 'target_id'], name='audit_target_idx'), models.Index(fields=['actor_label', '-at'], name='audit_actor_at_idx')],
                    },
                ),
            ],
        ),
    ]
