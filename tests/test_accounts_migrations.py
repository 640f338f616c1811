"""API keys and the audit log moved from profiles to accounts (accounts 0001-0002, profiles 0014): on a
database that had them under profiles, the rows, the permissions granted on them and the admin's
history survive the move, and the move runs backwards too."""

import pytest
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import ApiKey, AuditEntry

BEFORE = [("profiles", "0013_merge_security_round"), ("accounts", None)]


def _migrate(targets):
    """Migrate to `targets`; the models as the migrations applied then define them."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    ContentType.objects.clear_cache()
    return MigrationExecutor(connection)._create_project_state(with_applied_migrations=True).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.slow  # about 5 s: the migration states are rendered four times
@pytest.mark.django_db(transaction=True)
def test_keys_audit_entries_grants_and_history_follow_the_models_to_accounts():
    # given the database as it was before the move: API keys and the audit log belong to profiles
    old = _migrate(BEFORE)
    key_type = old.get_model("contenttypes", "ContentType").objects.get(app_label="profiles", model="apikey")
    User = old.get_model("auth", "User")
    boss = User.objects.create(username="boss", is_staff=True)
    key = old.get_model("profiles", "ApiKey").objects.create(
        name="shop backend", prefix="ab12cd34", hashed_secret="x", scopes=["ingest_events"], created_by=boss
    )
    Entry = old.get_model("profiles", "AuditEntry")
    Entry.objects.create(
        actor=boss,
        actor_label="boss",
        action="api_key.created",
        source="admin",
        target_type="profiles.apikey",
        target_id=str(key.pk),
        target_label="shop backend",
    )
    Entry.objects.create(actor_label="boss", action="auth.login", source="admin")
    auditors = old.get_model("auth", "Group").objects.create(name="Auditors")
    auditors.permissions.add(
        old.get_model("auth", "Permission").objects.get(content_type__app_label="profiles", codename="view_auditentry")
    )
    old.get_model("admin", "LogEntry").objects.create(
        user=boss,
        content_type=key_type,
        object_id=str(key.pk),
        object_repr="shop backend",
        action_flag=2,
        change_message="renamed",
    )

    # when the migrations of the move run
    _migrate(_latest())

    # then the rows are accounts', and the grant and the history follow the moved content types
    assert ApiKey.objects.get().name == "shop backend"
    assert list(AuditEntry.objects.order_by("id").values_list("action", "target_type")) == [
        ("api_key.created", "accounts.apikey"),
        ("auth.login", ""),
    ]
    assert not ContentType.objects.filter(app_label="profiles", model__in=["apikey", "auditentry"]).exists()
    assert set(Group.objects.get(name="Auditors").permissions.values_list("content_type__app_label", "codename")) == {
        ("accounts", "view_auditentry")
    }
    from django.contrib.admin.models import LogEntry

    assert LogEntry.objects.get().content_type == ContentType.objects.get_for_model(ApiKey)

    # and backwards the content types go home again
    _migrate(BEFORE)
    assert ContentType.objects.filter(app_label="profiles", model__in=["apikey", "auditentry"]).count() == 2
    assert Group.objects.get(name="Auditors").permissions.get().content_type.app_label == "profiles"
    _migrate(_latest())


@pytest.mark.django_db(transaction=True)
def test_content_types_created_between_the_two_accounts_migrations_are_folded_into_the_moved_ones():
    # given a migrate that stopped after accounts 0001, whose post_migrate created accounts' own rows
    state = _migrate([("accounts", "0001_initial")])
    ContentTypeAt = state.get_model("contenttypes", "ContentType")
    PermissionAt = state.get_model("auth", "Permission")
    moved = ContentTypeAt.objects.get(app_label="profiles", model="auditentry")
    fresh = ContentTypeAt.objects.create(app_label="accounts", model="auditentry")
    PermissionAt.objects.create(content_type=fresh, codename="view_auditentry", name="Can view audit entry")
    grant = PermissionAt.objects.get(content_type=moved, codename="view_auditentry")
    state.get_model("auth", "Group").objects.create(name="Auditors").permissions.add(grant)

    # when the rest runs
    _migrate(_latest())

    # then one accounts row remains, the moved one, with its grants
    assert ContentType.objects.get(app_label="accounts", model="auditentry").pk == moved.pk
    assert Group.objects.get(name="Auditors").permissions.get().content_type_id == moved.pk
