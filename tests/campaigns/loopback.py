"""Real servers on loopback for the channel tests: an SMTP server (aiosmtpd) and a push receiver (http.server)."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Inbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.lock:
            self.envelopes.append(envelope)
            self.messages.append(msg)
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server():
    """Yield (port, inbox) for an SMTP server on 127.0.0.1 that keeps every message it accepts."""
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


class PushReceiver:
    """Checks each POST's HMAC-SHA256 signature and dedupes on Idempotency-Key, like the shop's push service.

    `fail_first` answers 503 to the first N requests of each key; `slow_first` sleeps that many
    seconds before answering the first request of each key (the sender's timeout fires)."""

    def __init__(self, secret: str, *, fail_first: int = 0, slow_first: float = 0.0):
        self.secret = secret
        self.fail_first = fail_first
        self.slow_first = slow_first
        self.requests = Counter()  # key -> requests seen
        self.accepted: dict[str, dict] = {}  # key -> payload, once
        self.bad_signatures = 0
        self.times: dict[str, list[float]] = {}
        self.lock = threading.Lock()


@contextmanager
def push_receiver(secret: str, **kwargs):
    state = PushReceiver(secret, **kwargs)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            expected = "sha256=" + hmac.new(state.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Signature", "")):
                with state.lock:
                    state.bad_signatures += 1
                self.send_response(401)
                self.end_headers()
                return
            key = self.headers.get("Idempotency-Key", "")
            with state.lock:
                state.requests[key] += 1
                n = state.requests[key]
                state.times.setdefault(key, []).append(time.monotonic())
            if n == 1 and state.slow_first:
                time.sleep(state.slow_first)
            if n <= state.fail_first:
                self.send_response(503)
                self.end_headers()
                return
            with state.lock:
                state.accepted.setdefault(key, json.loads(body))
            self.send_response(202)
            self.end_headers()
            self.wfile.write(b'{"ok":true}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/push", state
    finally:
        server.shutdown()
        server.server_close()
