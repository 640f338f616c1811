"""Issue #12 finding 1: operator-written text reaching a console page is data, never markup or script.

A Marketing operator named a segment `</script><script>…</script>`; the dashboard wrote the
segments' names with `json.dumps(...)|safe` inside an inline script, so the payload closed the
script and ran in the Administrator's browser. These tests put hostile names everywhere an
operator can write one and read every console page that shows them: no executable script holds
the payload, the JSON islands (`json_script`) hold it escaped, no page has an inline script at all
and each answer carries a Content-Security-Policy that forbids inline script.
"""

from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db

MARK = "pwned"
PAYLOADS = [
    f"</script><script>window.__{MARK}=1</script>",
    f"</SCRIPT ><script>window.__{MARK}=2</script>",
    f"<!--<script>window.__{MARK}=3//",
    f'"]}};window.__{MARK}=4;//',
    f'\u2028\u2029</script ><img src=x onerror="window.__{MARK}=5">',
    f"<svg onload=window.__{MARK}=6>",
]
JSON_TYPES = {"application/json"}


class _Scripts(HTMLParser):
    """The page's script elements (attributes, text) and every on* attribute, as a browser's tokenizer sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict, str]] = []
        self.handlers: list[tuple[str, str, str]] = []
        self._in: dict | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [(tag, k, v or "") for k, v in attrs.items() if k.startswith("on")]
        if tag == "script":
            self._in, self._text = attrs, []

    def handle_data(self, data):
        if self._in is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._in is not None:
            self.scripts.append((self._in, "".join(self._text)))
            self._in = None


def parse(html: str) -> _Scripts:
    p = _Scripts()
    p.feed(html)
    p.close()
    return p


def assert_page_is_inert(resp):
    """The checks that matter for a console page: no script runs that the server did not ship as a file."""
    assert resp.status_code == 200, resp.status_code
    html = resp.content.decode()
    page = parse(html)
    for attrs, text in page.scripts:
        kind = (attrs.get("type") or "text/javascript").lower()
        if kind in JSON_TYPES:
            # data islands (json_script): the text cannot close the element or open a comment
            assert "<" not in text and ">" not in text, text[:200]
            continue
        assert attrs.get("src"), f"inline script on {resp.request['PATH_INFO']}: {text[:200]!r}"
        assert MARK not in text
    assert not [h for h in page.handlers if MARK in h[2]], page.handlers
    assert page.handlers == [], f"inline event handlers: {page.handlers}"
    policy = resp.headers.get("Content-Security-Policy", "")
    script_src = next((d for d in policy.split(";") if d.strip().startswith("script-src")), "")
    assert "'self'" in script_src and "unsafe-inline" not in script_src and "unsafe-eval" not in script_src, policy
    return html


def hostile_shop(*, with_campaign: bool = True):
    """A shop whose operator-writable names are all XSS payloads: segments, a clustering run's
    segments, a campaign, an item, a customer. Returns the objects the pages are about."""
    from campaigns.models import Campaign
    from profiles.models import Customer, Item
    from recommendations.models import RecommenderRun
    from segments.models import ClusteringRun, Membership, Segment, SegmentSize

    now = timezone.now()
    customer = Customer.objects.create(
        external_id="cust-1", name=PAYLOADS[0], email="c1@example.com", consent_email=True
    )
    Item.objects.create(external_id="sku-1", title=PAYLOADS[1], category=PAYLOADS[2], price=10)
    run = ClusteringRun.objects.create(
        status="succeeded",
        features=["recency_days", "frequency"],
        ks=[2, 3, 4],
        inertia=[30.0, 20.0, 15.0],
        silhouette=[0.3, 0.4, 0.35],
        elbow_k=3,
        chosen_k=3,
        n_customers=1,
        finished_at=now,
    )
    segments = []
    for i, payload in enumerate(PAYLOADS):
        seg = Segment.objects.create(
            name=payload,
            description=payload,
            kind="rule",
            rule={"consent": "email"},
            size=10 + i,
            active=True,
            refreshed_at=now,
        )
        SegmentSize.objects.create(segment=seg, at=now - timedelta(days=1), size=5 + i)
        SegmentSize.objects.create(segment=seg, at=now, size=10 + i)
        segments.append(seg)
    cluster = Segment.objects.create(
        name=PAYLOADS[3],
        kind="cluster",
        centroid={"recency_days": 3.0, "frequency": 2.0},
        clustering_run=run,
        size=1,
        active=True,
    )
    run.centroids = [
        {"segment": cluster.pk, "name": PAYLOADS[3], "size": 1, "centroid": {"recency_days": 3.0, "frequency": 2.0}}
    ]
    run.save()
    Membership.objects.create(segment=segments[0], customer=customer)
    RecommenderRun.objects.create(
        status="succeeded",
        ndcg_at_10=0.1,
        precision_at_10=0.05,
        recall_at_10=0.2,
        coverage=0.5,
        started_at=now - timedelta(hours=1),
        finished_at=now,
    )
    campaign = None
    if with_campaign:
        campaign = Campaign.objects.create(
            name=PAYLOADS[0],
            goal=PAYLOADS[4],
            kind="message",
            channel="email",
            title_template="Hello",
            body_template="Hi",
            window_start=None,
            window_end=None,
            status="running",
            launched_at=now,
        )
        campaign.segments.set(segments[:2])
    return {"customer": customer, "segments": segments, "cluster": cluster, "clustering": run, "campaign": campaign}


def console_pages(objs) -> list[str]:
    """Every console page with charts, and the pages that show an operator's names."""
    seg, campaign = objs["segments"][0], objs["campaign"]
    return [
        "/admin/dashboard/",
        "/admin/",
        "/admin/segments/segment/",
        f"/admin/segments/segment/{seg.pk}/change/",
        f"/admin/segments/segment/{objs['cluster'].pk}/change/",
        "/admin/segments/segment/add/",
        f"/admin/segments/clusteringrun/{objs['clustering'].pk}/change/",
        "/admin/segments/membership/",
        "/admin/recommendations/recommenderrun/",
        "/admin/campaigns/campaign/",
        f"/admin/campaigns/campaign/{campaign.pk}/change/",
        "/admin/campaigns/campaign/add/",
        f"/admin/profiles/customer/{objs['customer'].pk}/change/",
        "/admin/profiles/item/",
        "/admin/pipeline/pipelinerun/",
        "/admin/accounts/auditentry/",
    ]


def test_the_dashboard_attack_does_not_run_a_script(admin_client):
    """The exact attack of the issue: a segment named `</script><script>…` on the Administrator's dashboard."""
    hostile_shop(with_campaign=False)
    resp = admin_client.get("/admin/dashboard/")
    html = assert_page_is_inert(resp)
    # the names reach the chart through a JSON island, escaped, and read back intact
    charts = resp.context["charts"]
    assert set(PAYLOADS) <= set(charts["segments"]["labels"])
    assert '<script id="dashboard-charts" type="application/json">' in html
    assert "\\u003C/script\\u003E\\u003Cscript\\u003Ewindow.__pwned=1" in html


@pytest.mark.parametrize("index", range(16))
def test_every_console_page_keeps_hostile_names_inert(admin_client, index):
    objs = hostile_shop()
    url = console_pages(objs)[index]
    assert_page_is_inert(admin_client.get(url))


def test_the_unsubscribe_page_and_api_docs_carry_the_policy(client):
    resp = client.get("/api/docs/")
    assert_page_is_inert(resp)
    assert "cdn.jsdelivr" not in resp.content.decode()  # served by the app (drf-spectacular-sidecar), works offline
    resp = client.get("/api/campaigns/unsubscribe/not-a-token/")
    assert "Content-Security-Policy" in resp.headers
