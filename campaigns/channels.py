"""
Channels behind one interface: `send(messages) -> list[Outcome]`, one outcome per message, in order.

* in-app: the Delivery row is the inbox entry, so "sending" is marking it sent (nothing leaves);
* email: Django's email backend (SMTP from EMAIL_* settings), one connection per batch, a
  deterministic Message-ID built from the delivery's provider key and an unsubscribe link;
* push: an HTTP POST of a JSON payload to CAMPAIGN_PUSH_URL, signed with HMAC-SHA256
  (`X-Signature: sha256=<hex>` over the exact body bytes) and carrying `Idempotency-Key`, retried with
  exponential backoff on 5xx, timeouts and connection errors; a 4xx is final.

A channel never touches the database: the send service claims rows before and records outcomes after.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.core import mail

log = logging.getLogger(__name__)


@dataclass
class Message:
    delivery_id: int
    provider_key: str
    customer_external_id: str
    email: str
    title: str
    body: str
    campaign_id: int
    unsubscribe_url: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Outcome:
    ok: bool
    error: str = ""
    attempts: int = 1
    delivered: bool = True  # the channel confirmed acceptance (in-app: not until the frontend reads the inbox)


class ChannelError(Exception):
    pass


class InAppChannel:
    name = "in_app"
    # The message is the delivery row the inbox reads: the claim that writes it sends it
    # (campaigns.services.deliveries_send), so `send` is only called with a send delay set.
    sent_on_claim = True

    def send(self, messages: list[Message]) -> list[Outcome]:
        return [Outcome(ok=True, delivered=False) for _ in messages]


def message_id(provider_key: str) -> str:
    domain = (settings.DEFAULT_FROM_EMAIL or "marketing@localhost").rpartition("@")[2].strip(">") or "localhost"
    return f"<{provider_key}@{domain}>"


class EmailChannel:
    name = "email"

    def __init__(self, connection=None):
        self.connection = connection

    def build(self, m: Message) -> mail.EmailMultiAlternatives:
        from django.utils.html import escape, linebreaks

        sender = settings.CAMPAIGN_FROM_EMAIL or settings.DEFAULT_FROM_EMAIL
        text = m.body + (f"\n\n--\nUnsubscribe: {m.unsubscribe_url}\n" if m.unsubscribe_url else "")
        headers = {
            "Message-ID": message_id(m.provider_key),
            "X-Campaign": str(m.campaign_id),
            "X-Delivery-Key": m.provider_key,
        }
        if m.unsubscribe_url:
            headers["List-Unsubscribe"] = f"<{m.unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg = mail.EmailMultiAlternatives(subject=m.title, body=text, from_email=sender, to=[m.email], headers=headers)
        html = linebreaks(escape(m.body))
        if m.unsubscribe_url:
            html += f'<p style="font-size:small"><a href="{escape(m.unsubscribe_url)}">Unsubscribe</a></p>'
        msg.attach_alternative(html, "text/html")
        return msg

    def send(self, messages: list[Message]) -> list[Outcome]:
        out: list[Outcome] = []
        connection = self.connection or mail.get_connection(fail_silently=False)
        try:
            connection.open()
            for m in messages:
                if not m.email:
                    out.append(Outcome(ok=False, error="no email address"))
                    continue
                try:
                    connection.send_messages([self.build(m)])
                    out.append(Outcome(ok=True))
                except Exception as exc:  # one refused recipient must not fail the batch
                    log.warning("email to delivery %s failed: %s", m.delivery_id, exc)
                    out.append(Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500]))
        except Exception as exc:  # the server is unreachable: every message of the batch failed
            log.warning("email connection failed: %s", exc)
            out.extend(Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500]) for _ in messages[len(out) :])
        finally:
            try:
                connection.close()
            except Exception:
                pass
        return out


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class PushChannel:
    name = "push"

    def __init__(
        self,
        url: str | None = None,
        secret: str | None = None,
        *,
        timeout: float | None = None,
        max_attempts: int | None = None,
        backoff: float | None = None,
        concurrency: int | None = None,
        sleep=time.sleep,
    ):
        self.url = url if url is not None else settings.CAMPAIGN_PUSH_URL
        self.secret = secret if secret is not None else settings.CAMPAIGN_PUSH_SECRET
        self.timeout = float(timeout if timeout is not None else settings.CAMPAIGN_PUSH_TIMEOUT_SECONDS)
        self.max_attempts = max(1, int(settings.CAMPAIGN_PUSH_MAX_ATTEMPTS if max_attempts is None else max_attempts))
        self.backoff = float(backoff if backoff is not None else settings.CAMPAIGN_PUSH_BACKOFF_SECONDS)
        self.concurrency = max(1, int(settings.CAMPAIGN_PUSH_CONCURRENCY if concurrency is None else concurrency))
        self.sleep = sleep

    def payload(self, m: Message) -> bytes:
        return json.dumps(
            {
                "idempotency_key": m.provider_key,
                "campaign": m.campaign_id,
                "customer": m.customer_external_id,
                "title": m.title,
                "body": m.body,
                "data": m.data,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    def send_one(self, m: Message) -> Outcome:
        body = self.payload(m)
        headers = {
            "Content-Type": "application/json",
            "X-Signature": sign(self.secret, body),
            "Idempotency-Key": m.provider_key,
        }
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    resp.read()
                return Outcome(ok=True, attempts=attempt)
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if exc.code < 500:
                    return Outcome(ok=False, error=error, attempts=attempt)  # the receiver refused it: final
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.max_attempts:
                self.sleep(self.backoff * (2 ** (attempt - 1)))
        return Outcome(
            ok=False, error=f"gave up after {self.max_attempts} attempts: {error}"[:500], attempts=self.max_attempts
        )

    def send(self, messages: list[Message]) -> list[Outcome]:
        if not self.url or not self.secret:
            raise ChannelError("push needs CAMPAIGN_PUSH_URL and CAMPAIGN_PUSH_SECRET")
        if self.concurrency == 1 or len(messages) <= 1:
            return [self.send_one(m) for m in messages]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(messages))) as pool:
            return list(pool.map(self.send_one, messages))


def channel_for(name: str):
    return {"in_app": InAppChannel, "email": EmailChannel, "push": PushChannel}[name]()
