"""Customers' personal data stays out of the logs (issue #12, finding 10): e-mail addresses in any
script and with quoted local parts, and customers' external ids in the URLs that request logs quote
(Django's "Not Found: ..." warnings, the development server's and gunicorn's access lines)."""

import io
import logging
import os

import pandas as pd
import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from config.logfilters import RedactPersonalData, redact
from tests.factories import UserFactory

# --- e-mail addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "jürgen.müller@bücher.de",
        "müller@example.com",
        '"<script>alert(1)</script>"@example.com',
        '"john \\"johnny\\" smith"@example.com',
        "d'artagnan@mousquetaires.fr",
        "用户@例子.广告",
        "θσερ@εχαμπλε.ψομ",
        "kim.lee+shop@example.co.uk",
        "kim@xn--bcher-kva.de",
        "kim@[192.0.2.1]",
        "अजय@डाटा.भारत",
    ],
)
def test_every_kind_of_address_is_redacted_whole(address):
    assert redact(f"email to delivery 7 failed: {address} refused") == "email to delivery 7 failed: <email> refused"
    assert (
        redact(f"SMTPRecipientsRefused({{'{address}': (550, b'no')}})")
        == "SMTPRecipientsRefused({'<email>': (550, b'no')})"
    )
    assert redact(f"<{address}>, ({address})") == "<<email>>, (<email>)"


def test_text_without_an_address_is_left_alone():
    text = "step profiles failed after 3.2 s: ValueError('bad row 7') at /api/items/sku-1/similar/ (celery@worker1)"
    assert redact(text) == text


# Unicode letters, marks and digits of many scripts, and the other characters an address may hold
# (but braces: RFC 5322 allows them, no mailbox uses them, and they open Python's reprs)
LETTERS = st.characters(categories=["L", "M", "N"])
ATOM = st.text(st.one_of(LETTERS, st.sampled_from("!#$%&*+=?^_`|~-")), min_size=1, max_size=12)
DOT_ATOM = st.lists(ATOM, min_size=1, max_size=4).map(".".join)
QUOTED = st.text(st.characters(exclude_characters='"\\\r\n', exclude_categories=["Cs"]), min_size=1, max_size=20).map(
    lambda s: f'"{s}"'
)
LABEL = st.text(st.one_of(LETTERS, st.just("-")), min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
DOMAIN = st.lists(LABEL, min_size=2, max_size=4).map(".".join)
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", st.one_of(DOT_ATOM, QUOTED), DOMAIN)


@settings(max_examples=300, deadline=None)
@given(ADDRESS)
def test_any_address_in_any_script_is_redacted_whole(address):
    assert redact(f"email to {address} failed") == "email to <email> failed"
    assert redact(f"refused: <{address}>; retrying") == "refused: <<email>>; retrying"


# --- external ids in URLs ------------------------------------------------------------------------

CUSTOMER_URLS = [  # every route with a customer's external id (profiles, segments, recommendations, experiments, ...)
    "/api/customers/{}/",
    "/api/customers/{}/export/",
    "/api/customers/{}/profile/",
    "/api/customers/{}/segments/",
    "/api/customers/{}/recommendations/",
    "/api/customers/{}/impressions/",
    "/api/customers/{}/experiments/",
    "/api/customers/{}/inbox/",
    "/api/customers/{}/inbox/12/opened/",
    "/api/customers/{}/inbox/12/clicked/",
    "/api/customers/{}/inbox/12/delivered/",
    "/api/customers/{}/activities/",
]


def test_every_route_with_a_customer_id_is_known_to_the_filter():
    from django.urls import get_resolver

    def walk(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern)

    routes = {
        r.replace("<str:external_id>", "{}").replace("<int:pk>", "12")
        for r in walk(get_resolver().url_patterns)
        if "external_id" in r and "customers/" in r
    }
    assert {"/" + r for r in routes} == set(CUSTOMER_URLS)


@pytest.mark.parametrize("url", CUSTOMER_URLS)
def test_customer_ids_in_logged_urls_are_replaced(url):
    for external_id in ("kim-4711", "kim@example.com", "Jürgen%20Müller", "shop:42"):
        line = f'"GET {url.format(external_id)}?limit=5 HTTP/1.1" 404 52'
        assert redact(line) == f'"GET {url.format("<id>")}?limit=5 HTTP/1.1" 404 52'


def test_unsubscribe_tokens_and_search_terms_in_logged_urls_are_replaced():
    assert (
        redact("GET /api/campaigns/unsubscribe/eyJjIjoia2ltIn0:1tX9:abc/ 200")
        == "GET /api/campaigns/unsubscribe/<token>/ 200"
    )
    assert (
        redact("GET /admin/profiles/customer/?q=kim%40example.com&o=1 200")
        == "GET /admin/profiles/customer/?q=<redacted>&o=1 200"
    )
    assert (
        redact("GET /admin/profiles/customer/?consent=1&q=J%C3%BCrgen 200")
        == "GET /admin/profiles/customer/?consent=1&q=<redacted> 200"
    )


# Loggers of packages only the tests and benches import: dill (with lifetimes, the reference BG/NBD of
# tests/profiles/test_predictions.py) gives its trace logger a stderr handler at import; the app never
# imports it (checked in test_the_app_never_imports_the_dev_only_packages).
DEV_ONLY_LOGGERS = {"dill"}


def test_the_app_never_imports_the_dev_only_packages():
    import subprocess
    import sys

    code = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "import config.urls, config.celery;"
        "print(sorted(m for m in ('dill', 'lifetimes', 'autograd') if m in sys.modules))"
    )
    env = {**os.environ, "SECRET_KEY": "test-only", "DEBUG": "0", "HTTPS_ONLY": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _writes_nothing(handler) -> bool:
    """A library's own null handler (py4j, which PySpark loads, has its own NullHandler class)."""
    return type(handler).__name__ == "NullHandler"


def _ours(handler) -> bool:
    return not type(handler).__module__.startswith("_pytest")  # pytest's own capture, not the app's


class _Output:
    """What the handlers settings.LOGGING configured write, into a buffer."""

    def __enter__(self):
        self.buffer = io.StringIO()
        self.handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and _ours(h)]
        self.saved = [h.setStream(self.buffer) for h in self.handlers]
        return self

    def __exit__(self, *exc):
        for h, stream in zip(self.handlers, self.saved, strict=False):
            h.setStream(stream)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@pytest.mark.django_db
def test_a_not_found_warning_names_no_customer():
    from profiles import services

    services.customers_upsert(rows=pd.DataFrame([{"external_id": "kim-4711", "email": "kim@example.com"}]))
    client = Client()
    client.force_login(UserFactory(username="administrator", superuser=True))
    with _Output() as out:
        assert client.get("/api/customers/nobody-9/inbox/12/opened/").status_code in (404, 405)
        assert client.get("/api/customers/kim-4711/nothing-here/").status_code == 404
    text = out.text
    assert "Not Found: /api/customers/<id>/nothing-here/" in text
    assert "kim-4711" not in text and "nobody-9" not in text


def test_every_handler_of_every_logger_redacts():
    """Django's own handlers (the development server's access lines, the DEBUG console, admin e-mails)
    included: records reach only handlers carrying the filter."""
    with _Output() as out:
        logging.getLogger("django.server").warning('"GET /api/customers/%s/ HTTP/1.1" 404 52', "kim@example.com")
    assert out.text.count("/api/customers/<id>/") == 1 and "kim" not in out.text
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        if lg.name in DEV_ONLY_LOGGERS:
            continue
        for handler in lg.handlers:
            if isinstance(handler, logging.NullHandler) or _writes_nothing(handler) or not _ours(handler):
                continue
            assert any(isinstance(f, RedactPersonalData) for f in handler.filters), (lg.name, handler)


def test_gunicorn_access_lines_name_no_customer():
    import runpy
    from datetime import timedelta
    from pathlib import Path
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import SafeAtoms

    from config.gunicorn_logging import RedactingLogger

    conf = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
    assert conf["logger_class"] == "config.gunicorn_logging.RedactingLogger"
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("logger_class", conf["logger_class"])
    logger = cfg.logger_class(cfg)
    assert isinstance(logger, RedactingLogger)
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/api/customers/jürgen.müller@bücher.de/recommendations/?q=kim",
        "PATH_INFO": "/api/customers/jürgen.müller@bücher.de/recommendations/",
        "QUERY_STRING": "q=kim",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.2",
        "HTTP_REFERER": "https://shop.example/account?email=kim%40example.com",
    }
    resp = SimpleNamespace(status="200 OK", sent=10, headers=[])
    atoms = logger.atoms(resp, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=3))
    line = logger.cfg.access_log_format % SafeAtoms(atoms)
    assert "/api/customers/<id>/recommendations/" in line
    assert "jürgen" not in line and "kim" not in line and "bücher" not in line
