"""Issue #14: the Access pages speak words: scopes by their names, audit entries with what changed
in sentences, targets by name and never a bare id or `object (1)`."""

import re

import pytest

from accounts.audit import audit_record
from accounts.models import AccountsAuditAction, ApiKeyScope, AuditEntry
from tests.factories import ApiKeyFactory, OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_api_keys_list_their_scopes_by_name(client):
    client.force_login(UserFactory(superuser=True))
    ApiKeyFactory(name="shop backend", scopes=[ApiKeyScope.INGEST_EVENTS, ApiKeyScope.READ_RECOMMENDATIONS])
    page = text(client.get("/admin/accounts/apikey/").content.decode())
    assert "Ingest events, Read recommendations (and issue customer tokens)" in page
    assert "ingest_events" not in page


def test_an_audit_entry_reads_as_sentences_with_its_target_by_name(client):
    boss = UserFactory(superuser=True)
    client.force_login(boss)
    marketer = OperatorFactory(username="marketer")
    audit_record(
        action=AccountsAuditAction.USER_CHANGED,
        actor=boss,
        target=marketer,
        source="admin",
        changes={
            "is_staff": {"from": True, "to": False},
            "groups": {"added": ["Analyst"], "removed": ["Marketing operator"]},
            "email": "(changed)",
        },
    )
    entry = AuditEntry.objects.get(action=AccountsAuditAction.USER_CHANGED)
    page = client.get(f"/admin/accounts/auditentry/{entry.pk}/change/").content.decode()
    words = text(page)
    assert "Is staff from yes to no" in words
    assert "Groups added: Analyst; removed: Marketing operator" in words
    assert "Email (changed)" in words
    assert f'href="/admin/auth/user/{marketer.pk}/change/">marketer</a>' in page
    assert "What: User" in words and "auth.user" not in words
    assert "User changed" in words and "user.changed" not in words  # the title says the action in words
    assert "object (" not in words and "{" not in words


def test_a_target_without_a_name_is_not_captioned_by_its_id(client):
    client.force_login(UserFactory(superuser=True))
    AuditEntry.objects.create(
        actor_label="shell:ops",
        action=AccountsAuditAction.API_KEY_REVOKED,
        source="shell",
        target_type="accounts.apikey",
        target_id="987",
    )
    listing = text(client.get("/admin/accounts/auditentry/").content.decode())
    assert "API key (no name recorded)" in listing and " 987 " not in f" {listing} "
    assert "When Who Action Target Source IP address" in listing and "Actor label" not in listing
    assert "Shell" in listing
