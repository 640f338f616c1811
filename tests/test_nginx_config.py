"""The nginx configuration the deployment docs show (deploy/nginx.conf) is one nginx accepts, and it
sets what the app's proxy settings expect (issue #12: slow clients starved /healthz without a
buffering proxy; TRUSTED_PROXY_COUNT=1 reads the address this nginx appends)."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF = (REPO / "deploy" / "nginx.conf").read_text()


def test_the_proxy_buffers_requests_and_answers_and_sets_the_headers_the_app_trusts():
    for directive in (
        "proxy_request_buffering on;",
        "proxy_buffering on;",
        "client_body_timeout",
        "client_header_timeout",
        "send_timeout",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "location = /healthz",
        "location /static/",
    ):
        assert directive in CONF, directive
    assert "TRUSTED_PROXY_COUNT=1" in CONF and "TRUST_X_FORWARDED_PROTO=1" in CONF
    assert "deploy/nginx.conf" in (REPO / "docs" / "security.md").read_text()
    assert CONF.strip() in (REPO / "docs" / "configuration.md").read_text(), (
        "docs/configuration.md shows deploy/nginx.conf as it is"
    )


@pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("openssl"), reason="nginx or openssl not installed")
def test_nginx_accepts_the_configuration(tmp_path):
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=marketing.shop.example",
            "-keyout",
            str(tmp_path / "privkey.pem"),
            "-out",
            str(tmp_path / "fullchain.pem"),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "site.conf").write_text(CONF.replace("/etc/ssl/marketing/", f"{tmp_path}/"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n proxy_temp_path {tmp_path}/proxy;\n"
        f" include {tmp_path}/site.conf;\n}}\n"
    )
    proc = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "test is successful" in proc.stderr, proc.stderr
