"""An operator picks user-based collaborative filtering in the console; the next recomputation serves
it, and the customer page shows its suggestions with their reason in words (issue #20)."""

import re

import pytest

from pipeline.models import PipelineRun
from profiles.models import Customer
from recommendations.models import Recommendation, RecommenderConfig, RecommenderRun
from tests.browser.conftest import shot, sign_in
from tests.browser.test_operator_journeys import shop  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_operator_makes_user_based_cf_the_default_and_the_next_run_serves_it(page, live_server, shop, operator_login):  # noqa: F811
    # a flushing test may have emptied the presets the migration made
    RecommenderConfig.objects.get_or_create(
        name="Default (PureSVD)", defaults={"algorithm": "pure_svd", "is_default": True}
    )
    RecommenderConfig.objects.get_or_create(name="User-based CF", defaults={"algorithm": "user_knn"})
    sign_in(page, live_server, *operator_login)
    page.goto(f"{live_server.url}/admin/recommendations/recommenderconfig/")
    page.get_by_role("checkbox", name="Select this object for an action - User-based CF", exact=True).check()
    page.select_option("select[name=action]", "make_default")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    assert "“User-based CF” is now the default: the next recomputation serves it." in page.inner_text(".messagelist")

    page.goto(f"{live_server.url}/admin/pipeline/pipelinerun/start/")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist")
    assert PipelineRun.objects.order_by("-pk").first().status == "succeeded"
    run = RecommenderRun.objects.get(is_active=True)
    assert (run.config.name, run.algorithm) == ("User-based CF", "user_knn")

    # the runs list names the configuration each run served
    page.goto(f"{live_server.url}/admin/recommendations/recommenderrun/")
    assert "User-based CF" in page.inner_text("#result_list")

    # a customer's suggestion cards carry the neighbours' reason, with how many of them
    reco = Recommendation.objects.filter(run=run, kind="product", rank=1, reason="similar_users").first()
    assert reco is not None
    customer = Customer.objects.get(pk=reco.customer_id)
    page.goto(f"{live_server.url}/admin/profiles/customer/{customer.pk}/change/")
    text = page.inner_text("#content-main")
    assert re.search(r"(\d+ customers|a customer) with similar taste bought this", text, re.IGNORECASE)
    shot(page, "recommender-config-served")
    assert page.console_errors == []
