"""The console's numbers: one format for rates, money, counts and durations (common/display.py)."""

from datetime import timedelta

import pytest
from django.template import Context, Template

from common import display


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1394, "13.9%"), (1, "100.0%"), (0, "0.0%"), (0.0004, "0.04%"), (-0.05, "-5.0%"), (None, "—"), ("x", "—")],
)
def test_percent(value, text):
    assert display.percent(value) == text


def test_signed_percent_shows_direction():
    assert display.signed_percent(0.12) == "+12.0%"
    assert display.signed_percent(-0.05) == "−5.0%"
    assert display.signed_percent(0.0) == "0.0%"


def test_money_uses_the_shop_currency(settings):
    settings.SHOP_CURRENCY = "GBP"
    assert display.money(1234.5) == "£1,234.50"
    assert display.money(-3) == "-£3.00"
    assert display.money(10, "chf") == "10.00 CHF"
    assert display.money(None) == "—"


def test_number_days_duration_words():
    assert display.number(12345.678) == "12,346"
    assert display.number(0.123456, 2) == "0.12"
    assert display.days(8.352184472233796) == "8 days"
    assert display.days(1.5) == "1 day"
    assert display.days(0.2) == "today"
    assert display.duration(4.24) == "4.2 s"
    assert display.duration(timedelta(seconds=135)) == "2 min 15 s"
    assert display.duration(7300) == "2 h 1 min"
    assert display.words("no_consent") == "No consent"


def test_template_filters_escape_like_any_variable(settings):
    settings.SHOP_CURRENCY = "EUR"
    out = Template("{% load marketing %}{{ r|percent }} {{ m|money }} {{ n|number }} {{ c|words }}").render(
        Context({"r": 0.25, "m": 99.999, "n": 1e6, "c": "<b>_x"})
    )
    assert out == "25.0% €100.00 1,000,000 &lt;b&gt; x"


def test_ago_says_how_long_ago_in_words():
    from datetime import UTC, datetime

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert display.ago(now - timedelta(seconds=20), now) == "just now"
    assert display.ago(now + timedelta(hours=1), now) == "just now"
    assert display.ago(now - timedelta(hours=3, minutes=10), now) == "3 hours ago"
    assert display.ago(now - timedelta(days=1, hours=2), now) == "1 day ago"
    assert display.ago(now - timedelta(days=8, hours=9), now) == "8 days ago"
    assert display.ago(now - timedelta(days=20), now) == "2 weeks ago"
    assert display.ago(None) == "—"


def test_points_and_p_values_read_as_an_analyst_writes_them():
    from common.display import p_value, points

    assert points(0.021) == "+2.1 points" and points(-0.004) == "−0.4 points" and points(0.0) == "0.0 points"
    assert points(None) == "—"
    assert (
        p_value(0.3412) == "p = 0.34"
        and p_value(0.0042) == "p = 0.004"
        and p_value(0.0123) == "p = 0.012"
        and p_value(0.00001) == "p < 0.001"
    )
    assert p_value(None) == "—"


def test_when_says_the_moment_as_operators_do(settings):
    from datetime import UTC, datetime

    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert display.when(datetime(2026, 12, 3, 7, 40, tzinfo=UTC), now) == "today 07:40"
    assert display.when(datetime(2026, 12, 2, 18, 5, tzinfo=UTC), now) == "yesterday 18:05"
    assert display.when(datetime(2026, 11, 28, 9, 12, tzinfo=UTC), now) == "28 Nov 09:12"
    assert display.when(datetime(2025, 12, 3, 9, 12, tzinfo=UTC), now) == "3 Dec 2025 09:12"
    assert display.when(None) == "—"
