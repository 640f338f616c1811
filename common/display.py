"""Numbers as operators read them: percentages, money with the shop's currency, rounded counts, durations.

Every console page formats through these (as template filters: ``{% load marketing %}``, see
``common/display_tags.py``), so a rate is never shown as ``0.1394`` on one page and ``13.9%`` on another.
Each returns text; ``None`` (a figure that does not exist yet) reads as an em dash. Nothing here marks
text safe: the callers' templates escape as usual.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.timesince import timesince

MISSING = "—"

# Symbols written before the amount; other ISO codes are written after it ("1,234.50 CHF").
_SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥", "INR": "₹"}


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) or math.isinf(x) else x


def percent(value, digits: int = 1) -> str:
    """A share as a percentage: ``0.1394`` → ``13.9%``; ``0.0004`` → ``0.04%`` (small shares keep a
    significant digit instead of rounding to zero); ``-0.05`` → ``-5.0%``."""
    x = _number(value)
    if x is None:
        return MISSING
    pct = x * 100
    if pct != 0 and abs(pct) < 10 ** (-digits):
        # show the first significant digit so a non-zero rate never reads as 0.0%
        places = min(6, digits + max(0, -math.floor(math.log10(abs(pct))) - digits))
        return f"{pct:.{places}f}%"
    return f"{pct:.{digits}f}%"


def signed_percent(value, digits: int = 1) -> str:
    """A change as a signed percentage: ``0.12`` → ``+12.0%``; ``-0.05`` → ``−5.0%``."""
    x = _number(value)
    if x is None:
        return MISSING
    text = percent(abs(x), digits)
    if round(x * 100, digits) == 0:
        return text
    return ("+" if x > 0 else "−") + text


def money(value, currency: str | None = None, digits: int = 2) -> str:
    """An amount with the shop's currency (``settings.SHOP_CURRENCY``): ``1234.5`` → ``€1,234.50``."""
    x = _number(value)
    if x is None:
        return MISSING
    code = (currency or settings.SHOP_CURRENCY).upper()
    sign = "-" if x < 0 else ""
    amount = f"{abs(x):,.{digits}f}"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {code}"


def number(value, digits: int = 0) -> str:
    """A count or figure rounded, with thousands separators: ``12345.678`` → ``12,346``."""
    x = _number(value)
    if x is None:
        return MISSING
    if digits == 0:
        return f"{round(x):,}"
    return f"{x:,.{digits}f}"


def days(value) -> str:
    """A number of days in words: ``0.3`` → ``today``, ``1`` → ``1 day``, ``8.35`` → ``8 days``."""
    x = _number(value)
    if x is None:
        return MISSING
    n = math.floor(x)
    if n <= 0:
        return "today"
    return "1 day" if n == 1 else f"{n:,} days"


def duration(value) -> str:
    """Seconds (or a timedelta) in the largest sensible units: ``4.2`` → ``4.2 s``, ``135`` → ``2 min 15 s``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    x = _number(value)
    if x is None:
        return MISSING
    if x < 60:
        return f"{x:.1f} s" if x < 10 else f"{round(x)} s"
    minutes, seconds = divmod(round(x), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def words(code) -> str:
    """A snake_case code as words, for codes that have no label of their own: ``no_consent`` → ``No consent``."""
    if code is None or code == "":
        return MISSING
    text = str(code).replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def ago(value, now=None) -> str:
    """How long ago a moment was: ``3 hours ago``, ``8 days ago`` (days up to two weeks), then in its largest
    unit (``3 weeks ago``, ``2 months ago``); ``just now`` under a minute (or in the future); ``None`` → ``—``."""
    if value is None:
        return MISSING
    now = now or timezone.now()
    seconds = (now - value).total_seconds()
    if seconds < 60:
        return "just now"
    if 86400 <= seconds < 14 * 86400:
        # days rather than "1 week": an operator reads "8 days ago" as the recency it is
        n = int(seconds // 86400)
        return "1 day ago" if n == 1 else f"{n} days ago"
    return timesince(value, now, depth=1).replace("\xa0", " ") + " ago"


def when(value, now=None) -> str:
    """A moment as operators say it, in the site's time zone: ``today 07:40``, ``yesterday 18:05``,
    ``28 Nov 09:12``, ``3 Dec 2025 09:12`` (another year)."""
    from django.utils import timezone

    if value is None:
        return MISSING
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    today = timezone.localdate(now)
    clock = f"{local:%H:%M}"
    if local.date() == today:
        return f"today {clock}"
    if (today - local.date()).days == 1:
        return f"yesterday {clock}"
    if local.year == today.year:
        return f"{local.day} {local:%b} {clock}"
    return f"{local.day} {local:%b %Y} {clock}"


def points(value, digits: int = 1) -> str:
    """A difference of two rates in percentage points, signed: ``0.021`` → ``+2.1 points``;
    ``-0.004`` → ``−0.4 points``."""
    x = _number(value)
    if x is None:
        return MISSING
    text = f"{abs(x) * 100:.{digits}f} points"
    if round(x * 100, digits) == 0:
        return text
    return ("+" if x > 0 else "−") + text


def p_value(value) -> str:
    """A test's p-value as a reader quotes it: ``0.3412`` → ``p = 0.34``, ``0.0123`` → ``p = 0.012``,
    ``0.0004`` → ``p < 0.001``."""
    x = _number(value)
    if x is None:
        return MISSING
    if x < 0.001:
        return "p < 0.001"
    return f"p = {x:.3f}" if x < 0.1 else f"p = {x:.2f}"
