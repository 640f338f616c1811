from django.db import migrations

ROLES = ("Administrator", "Marketing operator", "Analyst")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    # Their permissions are assigned after migrate by accounts.roles.sync_role_permissions,
    # once every app's permissions exist.


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [("profiles", "0006_api_keys"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_groups, remove_groups)]
