"""Launching a campaign asks first, and the question says who will get the message (issue #14)."""

import re

import pytest

from campaigns.models import Campaign
from tests.factories import CampaignFactory, CustomerRow, OperatorFactory, SegmentFactory, ingest

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("launch")</script>'


@pytest.fixture
def email_campaign():
    # ten customers with in-app consent, six of whom also agreed to email
    ingest(customers=[CustomerRow(external_id=f"lc{i}", consent_email=i < 6) for i in range(10)])
    everyone = SegmentFactory(name="Everyone in the app")
    return CampaignFactory(name=HOSTILE, channel="email", control_percent=50, segments=[everyone])


def _cells(html: str) -> dict[str, str]:
    row = re.search(r'<table id="launch-audience">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return {
        name: re.sub(r"<[^>]+>", "", re.search(rf'<td class="{name}">(.*?)</td>', row, re.S).group(1)).strip()
        for name in ("members", "no-consent", "control", "treated")
    }


def test_the_launch_button_leads_to_a_question_that_counts_who_gets_the_message(boss_client, email_campaign):
    page = boss_client.get(f"/admin/campaigns/campaign/{email_campaign.pk}/change/").content.decode()
    launch = f"/admin/campaigns/campaign/{email_campaign.pk}/launch/"
    assert f'href="{launch}">Launch…</a>' in page  # a link to the question, no longer a form that launches

    res = boss_client.get(launch)
    html = res.content.decode()
    assert res.status_code == 200 and "Launch this campaign?" in html
    cells = _cells(html)
    # 10 in the audience, 4 without email consent, half of the 6 others held out, 3 get it
    assert cells["members"] == "10" and cells["no-consent"] == "4"
    assert cells["control"].startswith("3 (50 % of those with consent)") and cells["treated"] == "3"
    assert HOSTILE not in html and "&lt;script&gt;alert(&quot;launch&quot;)&lt;/script&gt;" in html
    assert f'action="/admin/campaigns/campaign/{email_campaign.pk}/do/launch/"' in html
    # asking changes nothing
    assert Campaign.objects.get(pk=email_campaign.pk).status == "draft"


def test_yes_launches_it(boss_client, email_campaign, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        res = boss_client.post(f"/admin/campaigns/campaign/{email_campaign.pk}/do/launch/")
    assert res.status_code == 302
    assert Campaign.objects.get(pk=email_campaign.pk).status == "running"
    # a running campaign has nothing left to confirm: back to its page with the reason
    res = boss_client.get(f"/admin/campaigns/campaign/{email_campaign.pk}/launch/", follow=True)
    assert "it cannot be launched" in res.content.decode()


def test_the_list_action_asks_too_and_launches_only_on_yes(
    boss_client, email_campaign, django_capture_on_commit_callbacks
):
    second = CampaignFactory(name="Second", segments=list(email_campaign.segments.all()))
    picked = {"action": "launch_selected", "_selected_action": [email_campaign.pk, second.pk]}
    res = boss_client.post("/admin/campaigns/campaign/", picked)
    html = res.content.decode()
    assert res.status_code == 200 and "Launch these 2 campaigns?" in html
    assert html.count('<td class="members">10</td>') == 2
    assert set(Campaign.objects.values_list("status", flat=True)) == {"draft"}

    with django_capture_on_commit_callbacks(execute=True):
        boss_client.post("/admin/campaigns/campaign/", {**picked, "post": "yes"})
    assert set(Campaign.objects.values_list("status", flat=True)) == {"running"}


def test_only_an_operator_who_may_launch_sees_the_question(client, email_campaign):
    client.force_login(OperatorFactory(username="viewer", permissions=["campaigns.view_campaign"]))
    assert client.get(f"/admin/campaigns/campaign/{email_campaign.pk}/launch/").status_code == 403
