"""Issue #14: the admin index, its sidebar and the app index pages speak marketing.

Groups named for the work, in the work's order; Django's Users and Groups under Access; the
schedules' plumbing for administrators only; and a model an operator may not view stays hidden.
"""

import re
from html.parser import HTMLParser

import pytest

from accounts.roles import ADMINISTRATOR, ANALYST, MARKETING_OPERATOR
from tests.factories import OperatorFactory, UserFactory

pytestmark = pytest.mark.django_db


class _Groups(HTMLParser):
    """The groups of an app list as a page shows them: [(caption, [model names])], in page order.
    `within` is the id of the element holding the list (#content-main for the index, #nav-sidebar)."""

    def __init__(self, within):
        super().__init__(convert_charrefs=True)
        self.within, self.depth, self.groups = within, 0, []
        self._caption = self._row = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.depth:
            self.depth += tag not in ("br", "img", "input", "meta", "link")
        elif a.get("id") == self.within:
            self.depth = 1
            return
        if not self.depth:
            return
        if tag == "caption":
            self._caption = True
            self.groups.append(["", []])
        elif tag == "th" and a.get("scope") == "row" and self.groups:
            self._row = True
            self.groups[-1][1].append("")

    def handle_endtag(self, tag):
        if self.depth and tag not in ("br", "img", "input", "meta", "link"):
            self.depth -= 1
        if tag == "caption":
            self._caption = False
        elif tag == "th":
            self._row = False

    def handle_data(self, data):
        if self._caption:
            self.groups[-1][0] += data
        elif self._row:
            self.groups[-1][1][-1] += data


def groups(client, url="/admin/", within="content-main"):
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.status_code)
    parser = _Groups(within)
    parser.feed(resp.content.decode())
    return [(re.sub(r"\s+", " ", caption).strip(), [m.strip() for m in models]) for caption, models in parser.groups]


def signed_in(client, user):
    client.force_login(user)
    return client


def test_a_superuser_sees_the_work_in_order_and_the_plumbing_last_under_a_name_that_says_so(client):
    signed_in(client, UserFactory(superuser=True))
    seen = groups(client)
    assert [caption for caption, _ in seen] == [
        "Customers",
        "Segments",
        "Recommendations",
        "Experiments",
        "Campaigns",
        "Pipeline",
        "Access",
        "Schedules (administrators)",
    ]
    by_caption = dict(seen)
    assert by_caption["Customers"][:3] == ["Customers", "Events", "Items"]
    assert by_caption["Campaigns"][0] == "Campaigns"
    assert by_caption["Access"] == ["Users", "Groups", "API keys", "Audit log"]
    assert by_caption["Schedules (administrators)"][0] == "Periodic tasks"
    page = client.get("/admin/").content.decode()
    assert "Authentication and" not in page and "Periodic Tasks" not in page
    assert "Marketing console" in page and "Django administration" not in page


def test_a_marketing_operator_sees_the_work_and_none_of_the_plumbing(client):
    signed_in(client, OperatorFactory(role=MARKETING_OPERATOR))
    seen = groups(client)
    assert [caption for caption, _ in seen] == [
        "Customers",
        "Segments",
        "Recommendations",
        "Experiments",
        "Campaigns",
        "Pipeline",
    ]
    page = client.get("/admin/").content.decode()
    for plumbing in ("Periodic tasks", "Crontabs", "Clocked", "Solar events", "Schedules", "Users", "API keys"):
        assert plumbing not in page, plumbing
    assert client.get("/admin/django_celery_beat/").status_code == 404
    assert client.get("/admin/auth/").status_code == 404


def test_an_analyst_sees_what_they_may_view_and_no_model_they_may_not(client):
    signed_in(client, OperatorFactory(role=ANALYST))
    seen = dict(groups(client))
    assert list(seen) == ["Customers", "Segments", "Recommendations", "Experiments", "Campaigns", "Pipeline"]
    assert seen["Campaigns"][0] == "Campaigns"
    page = client.get("/admin/").content.decode()
    assert "addlink" not in page  # views only: no "Add" next to any model


def test_an_administrator_role_without_superuser_sees_access_but_not_the_plumbing(client):
    signed_in(client, OperatorFactory(role=ADMINISTRATOR))
    captions = [caption for caption, _ in groups(client)]
    assert captions == ["Customers", "Segments", "Recommendations", "Experiments", "Campaigns", "Pipeline", "Access"]


def test_an_operator_with_one_permission_sees_one_group_with_one_model(client):
    signed_in(client, OperatorFactory(permissions=["segments.view_segment"]))
    assert groups(client) == [("Segments", ["Segments"])]


def test_the_sidebar_has_the_same_groups_in_the_same_order(client):
    signed_in(client, UserFactory(superuser=True))
    index = groups(client)
    sidebar = groups(client, "/admin/profiles/customer/", within="nav-sidebar")
    assert sidebar == index


def test_the_access_index_page_holds_users_and_groups_and_the_breadcrumb_says_access(client):
    signed_in(client, UserFactory(superuser=True))
    for url in ("/admin/auth/", "/admin/accounts/"):
        assert groups(client, url) == [("Access", ["Users", "Groups", "API keys", "Audit log"])]
    page = client.get("/admin/auth/user/").content.decode()
    assert 'href="/admin/auth/">Access</a>' in page
    assert "Authentication and" not in page
    page = client.get("/admin/profiles/customer/").content.decode()
    assert 'href="/admin/profiles/">Customers</a>' in page
