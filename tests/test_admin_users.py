"""Issue #12 finding 1 (escalation) and 8 (audit): operator accounts and groups in the admin.

The attack: a script in an Administrator's browser posted the Administrator's user form with
`is_superuser=on` for the attacker. Forms here are posted as a browser would: every input,
checkbox and selected option the page shows, read from the page's HTML, plus what the attacker adds.
"""

from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group, Permission, User

from accounts.models import AuditEntry
from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR
from tests.factories import OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db


class _Form(HTMLParser):
    """The fields a browser would submit for the form with the given id."""

    def __init__(self, form_id):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside, self.data = form_id, False, []
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if not self.inside:
            return
        if tag == "input" and a.get("name") and "disabled" not in a:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.data.append((a["name"], a.get("value", "on")))
            elif kind not in ("submit", "button", "file"):
                self.data.append((a["name"], a.get("value", "")))
        elif tag == "select" and "disabled" not in a:
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.data.append((self._select, a.get("value", "")))
        elif tag == "textarea" and a.get("name"):
            self._textarea = [a["name"], ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.data.append(tuple(self._textarea))
            self._textarea = None


def page_form(client, url, form_id) -> dict[str, list[str]]:
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.status_code)
    parser = _Form(form_id)
    parser.feed(resp.content.decode())
    out: dict[str, list[str]] = {}
    for k, v in parser.data:
        out.setdefault(k, []).append(v)
    return out


def submit(client, url, form_id, **changes):
    data = page_form(client, url, form_id)
    for k, v in changes.items():
        data[k] = v if isinstance(v, list) else [v]
    data["_save"] = ["Save"]
    return client.post(url, data)


def perm(key: str) -> Permission:
    app, code = key.split(".")
    return Permission.objects.get(content_type__app_label=app, codename=code)


@pytest.fixture
def admin_user(db):
    """An Administrator (the role), not a superuser."""
    return OperatorFactory(username="ada", password="pw", role=ADMINISTRATOR)


@pytest.fixture
def marketer(db):
    return OperatorFactory(username="mallory", password="pw", role=MARKETING_OPERATOR)


@pytest.fixture
def ada(client, admin_user):
    client.force_login(admin_user)
    return client


def refused(action="user.change_refused"):
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def test_the_attack_an_administrator_form_post_with_is_superuser_on_is_refused_and_audited(ada, admin_user, marketer):
    url = f"/admin/auth/user/{marketer.pk}/change/"
    resp = submit(ada, url, "user_form", is_superuser="on", is_staff="on")
    assert resp.status_code == 200 and "Only a superuser can grant superuser status." in resp.content.decode()
    marketer.refresh_from_db()
    assert not marketer.is_superuser
    (entry,) = refused()
    assert (entry.actor, entry.target_id, entry.source) == (admin_user, str(marketer.pk), "admin")
    assert "is_superuser" in entry.changes["posted"] and "superuser" in entry.changes["refused"][0]
    assert 'name="is_superuser"' not in ada.get(url).content.decode()  # not even offered to a non-superuser


def test_an_administrator_cannot_grant_a_permission_or_group_they_lack(ada, marketer):
    url = f"/admin/auth/user/{marketer.pk}/change/"
    lacking = perm("sessions.delete_session")  # not in the Administrator role
    resp = submit(ada, url, "user_form", user_permissions=[str(lacking.pk)])
    assert "you lack: sessions.delete_session" in resp.content.decode()
    root_ish = Group.objects.create(name="Session keepers")
    root_ish.permissions.add(lacking)
    resp = submit(ada, url, "user_form", groups=[str(root_ish.pk)])
    assert "“Session keepers” has sessions.delete_session" in resp.content.decode()
    marketer.refresh_from_db()
    assert not marketer.user_permissions.exists() and list(marketer.groups.values_list("name", flat=True)) == [
        MARKETING_OPERATOR
    ]
    assert len(refused()) == 2
    # what they hold themselves they may give
    analyst = Group.objects.get(name=ANALYST)
    resp = submit(
        ada,
        url,
        "user_form",
        groups=[str(g.pk) for g in marketer.groups.all()] + [str(analyst.pk)],
        user_permissions=[str(perm("segments.view_segment").pk)],
    )
    assert resp.status_code == 302
    assert set(marketer.groups.values_list("name", flat=True)) == {MARKETING_OPERATOR, ANALYST}
    (changed,) = AuditEntry.objects.filter(action="user.changed")
    assert changed.changes == {
        "groups": {"added": [ANALYST], "removed": []},
        "user_permissions": {"added": ["segments.view_segment"], "removed": []},
    }


def test_an_administrator_cannot_touch_a_superuser_account(ada):
    root = UserFactory(username="root", password="pw", superuser=True)
    change = f"/admin/auth/user/{root.pk}/change/"
    assert 'name="_save"' not in ada.get(change).content.decode()  # view only
    assert ada.post(change, {"username": "root", "is_active": ""}).status_code == 403
    assert (
        ada.post(
            f"/admin/auth/user/{root.pk}/password/", {"password1": "x-new-pass-1", "password2": "x-new-pass-1"}
        ).status_code
        == 403
    )
    assert ada.post(f"/admin/auth/user/{root.pk}/delete/", {"post": "yes"}).status_code == 403
    ada.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [root.pk], "post": "yes"})
    root.refresh_from_db()
    assert root.is_active and root.check_password("pw")


def test_an_administrator_cannot_raise_their_own_rights(ada, admin_user):
    lacking = perm("sessions.delete_session")
    url = f"/admin/auth/user/{admin_user.pk}/change/"
    resp = submit(ada, url, "user_form", user_permissions=[str(lacking.pk)], is_superuser="on")
    assert resp.status_code == 200
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser and not admin_user.user_permissions.exists()
    # nor through a group they belong to
    group = Group.objects.get(name=ADMINISTRATOR)
    resp = submit(
        ada,
        f"/admin/auth/group/{group.pk}/change/",
        "group_form",
        permissions=[str(p.pk) for p in group.permissions.all()] + [str(lacking.pk)],
    )
    assert resp.status_code == 200 and "you lack: sessions.delete_session" in resp.content.decode()
    assert not group.permissions.filter(pk=lacking.pk).exists()
    assert refused("group.change_refused")


def test_a_superuser_still_grants_anything_and_each_step_is_audited(client, boss, marketer):
    client.force_login(boss)
    resp = client.post(
        "/admin/auth/user/add/",
        {
            "username": "newbie",
            "password1": "a-long-pass-phrase-1",
            "password2": "a-long-pass-phrase-1",
            "usable_password": "true",
        },
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    newbie = User.objects.get(username="newbie")
    (created,) = AuditEntry.objects.filter(action="user.created")
    assert created.target_id == str(newbie.pk) and created.changes["password"] == "(set)"
    assert created.changes["is_superuser"] is False

    url = f"/admin/auth/user/{marketer.pk}/change/"
    resp = submit(
        client,
        url,
        "user_form",
        is_superuser="on",
        email="m2@example.com",
        user_permissions=[str(perm("sessions.delete_session").pk)],
        groups=[],
    )
    assert resp.status_code == 302
    (changed,) = AuditEntry.objects.filter(action="user.changed")
    assert changed.changes == {
        "is_superuser": {"from": False, "to": True},
        "email": "(changed)",
        "groups": {"added": [], "removed": [MARKETING_OPERATOR]},
        "user_permissions": {"added": ["sessions.delete_session"], "removed": []},
    }
    resp = client.post(
        f"/admin/auth/user/{marketer.pk}/password/",
        {
            "password1": "an-other-pass-9",
            "password2": "an-other-pass-9",
            "usable_password": "true",
            "set_usable_password": "true",
        },
    )
    assert resp.status_code == 302
    pw = AuditEntry.objects.filter(action="user.changed").order_by("-id").first()
    assert pw.changes == {"password": "(changed)"}
    marketer.refresh_from_db()
    assert marketer.password not in str(list(AuditEntry.objects.values_list("changes", flat=True)))
    client.post(f"/admin/auth/user/{marketer.pk}/delete/", {"post": "yes"})
    (deleted,) = AuditEntry.objects.filter(action="user.deleted")
    assert deleted.target_label == "mallory"


def test_groups_created_changed_and_deleted_are_audited_with_their_permissions(client, boss):
    client.force_login(boss)
    a, b = perm("segments.view_segment"), perm("campaigns.view_campaign")
    assert client.post("/admin/auth/group/add/", {"name": "Readers", "permissions": [a.pk]}).status_code == 302
    group = Group.objects.get(name="Readers")
    assert (
        client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "Readers", "permissions": [b.pk]}).status_code
        == 302
    )
    client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    (created,) = AuditEntry.objects.filter(action="group.created")
    assert created.changes == {"name": "Readers", "permissions": {"added": ["segments.view_segment"], "removed": []}}
    (changed,) = AuditEntry.objects.filter(action="group.changed")
    assert changed.changes == {
        "permissions": {"added": ["campaigns.view_campaign"], "removed": ["segments.view_segment"]}
    }
    (deleted,) = AuditEntry.objects.filter(action="group.deleted")
    assert deleted.target_label == "Readers"


def test_an_operators_own_password_change_is_audited_without_the_hash(ada, admin_user):
    resp = ada.post(
        "/admin/password_change/",
        {"old_password": "pw", "new_password1": "a-fresh-pass-77", "new_password2": "a-fresh-pass-77"},
    )
    assert resp.status_code == 302
    (entry,) = AuditEntry.objects.filter(action="user.changed")
    admin_user.refresh_from_db()
    assert (entry.actor, entry.target_id, entry.changes) == (admin_user, str(admin_user.pk), {"password": "(changed)"})
    assert admin_user.check_password("a-fresh-pass-77")
