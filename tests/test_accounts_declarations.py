"""What accounts collects from the apps above it (their audit actions, their roles' permissions), and
that it names none of them."""

import ast
from pathlib import Path

import pytest

import accounts
from accounts.actions import audit_action_choices
from accounts.models import AuditEntry
from accounts.roles import ANALYST, MARKETING_OPERATOR, _granted

# The audit log's actions and labels, as the admin's filter offered them before each app declared its own.
ACTIONS = {
    "segment.created": "Segment created",
    "segment.changed": "Segment changed",
    "segment.deleted": "Segment deleted",
    "campaign.created": "Campaign created",
    "campaign.changed": "Campaign changed",
    "campaign.deleted": "Campaign deleted",
    "campaign.scheduled": "Campaign scheduled",
    "campaign.launched": "Campaign launched",
    "campaign.paused": "Campaign paused",
    "campaign.resumed": "Campaign resumed",
    "campaign.cancelled": "Campaign cancelled",
    "campaign.completed": "Campaign completed",
    "campaign.winner_sent": "Campaign test decided, winner sent to the rest",
    "customer.created": "Customer created",
    "customer.changed": "Customer changed",
    "customer.deleted": "Customer deleted",
    "customer.forgotten": "Customer forgotten",
    "consent.changed": "Consent changed",
    "api_key.created": "API key created",
    "api_key.revoked": "API key revoked",
    "api_key.changed": "API key changed",
    "user.created": "User created",
    "user.changed": "User changed",
    "user.deleted": "User deleted",
    "user.change_refused": "User change refused (escalation)",
    "group.created": "Group created",
    "group.changed": "Group changed",
    "group.deleted": "Group deleted",
    "group.change_refused": "Group change refused (escalation)",
    "pipeline.started": "Recomputation started",
    "recommender_config.created": "Recommender configuration created",
    "recommender_config.changed": "Recommender configuration changed",
    "recommender_config.deleted": "Recommender configuration deleted",
    "recommender_config.made_default": "Recommender configuration made the default",
    "experiment.created": "Experiment created",
    "experiment.changed": "Experiment changed",
    "experiment.deleted": "Experiment deleted",
    "experiment.started": "Experiment started",
    "experiment.stopped": "Experiment stopped",
    "experiment.promoted": "Experiment winner made the default",
    "auth.login": "Signed in",
    "auth.login_failed": "Sign-in refused",
}


def test_the_audit_log_offers_every_apps_actions_with_their_labels():
    assert dict(audit_action_choices()) == ACTIONS
    assert len(audit_action_choices()) == len(ACTIONS)  # none declared twice
    assert AuditEntry(action="campaign.paused").get_action_display() == "Campaign paused"


@pytest.mark.django_db
def test_the_admin_filter_lists_the_actions_by_their_labels(admin_client):
    html = admin_client.get("/admin/accounts/auditentry/").content.decode()
    assert all(f"?action__exact={value}" in html and label in html for value, label in ACTIONS.items())


def test_role_patterns_grant_what_they_match_and_exclusions_win():
    profiles_operator = ["view_*", "!view_lease", "change_customer"]
    assert _granted("view_customer", profiles_operator) and _granted("change_customer", profiles_operator)
    assert not _granted("view_lease", profiles_operator) and not _granted("delete_customer", profiles_operator)
    assert not _granted("view_lease", ["!view_lease", "*"])


def test_apps_declare_their_roles_permissions_on_their_app_config():
    from django.apps import apps

    assert apps.get_app_config("segments").role_permissions[MARKETING_OPERATOR] == ["*"]
    assert apps.get_app_config("campaigns").role_permissions[ANALYST] == ["view_*"]


def test_accounts_imports_no_app_above_it():
    above = {"profiles", "segments", "recommendations", "experiments", "campaigns"}
    found = []
    for path in Path(accounts.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            )
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in above]
    assert found == []
