"""Issue #14: `make run` runs create_demo_operator on every start; it must not reset the demo
operator's password nor sign the browser out. `--reset-password` is there for whoever wants the reset."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("create_demo_operator", *args, stdout=out)
    return out.getvalue()


def test_it_creates_the_demo_operator_once_and_says_the_login(settings, client):
    settings.DEBUG = True
    said = run()
    assert "created" in said and "'demo'" in said and "'demo-operator'" in said
    assert client.login(username="demo", password="demo-operator")
    assert client.get("/admin/").status_code == 200


def test_a_second_start_keeps_a_changed_password_and_the_browser_signed_in(settings, client):
    settings.DEBUG = True
    run()
    user = User.objects.get(username="demo")
    user.set_password("my own secret 42")
    user.save()
    assert client.login(username="demo", password="my own secret 42")
    assert "Marketing console" in client.get("/admin/").content.decode()

    said = run()  # the next `make run`

    assert "login 'demo'" in said and "unless you changed it" in said and "--reset-password" in said
    assert User.objects.get(username="demo").check_password("my own secret 42")
    page = client.get("/admin/")  # the same browser session, still signed in
    assert page.status_code == 200 and "Marketing console" in page.content.decode()


def test_reset_password_puts_the_published_one_back(settings, client):
    settings.DEBUG = True
    run()
    user = User.objects.get(username="demo")
    user.set_password("forgotten")
    user.is_active = False
    user.save()
    assert "password reset" in run("--reset-password")
    assert client.login(username="demo", password="demo-operator")


def test_it_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=1"):
        run()
    assert not User.objects.filter(username="demo").exists()
