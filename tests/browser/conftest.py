"""Browser tests: Playwright drives Debian's Chromium (never a downloaded browser) against a live server."""

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are ordinary synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM:
        reason = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; REQUIRE_BROWSER=1 demands it")
        pytest.skip(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (requirements-dev.txt)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    pg = context.new_page()
    pg.console_errors = []
    # console errors with where they came from; a favicon the admin does not have is not one
    pg.on(
        "console",
        lambda m: (
            pg.console_errors.append(f"{m.text} [{(m.location or {}).get('url', '')}]")
            if m.type == "error" and "favicon" not in (m.location or {}).get("url", "")
            else None
        ),
    )
    pg.on("pageerror", lambda e: pg.console_errors.append(f"page error: {e}"))
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-last.png"), full_page=True)
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


OPERATOR_PASSWORD = "a-good-passphrase"


@pytest.fixture
def operator_login(django_user_model):
    """A marketing operator's (username, password), for signing in through the real form."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("marketer", "m@example.com", OPERATOR_PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Marketing operator"))
    return "marketer", OPERATOR_PASSWORD


def sign_in(page, live_server, username: str, password: str = OPERATOR_PASSWORD) -> None:
    """Sign in through the admin's login form and wait for the console's home."""
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
