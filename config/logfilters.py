"""
Keep customers' personal data out of the logs.

`RedactPersonalData` is attached to every log handler (settings.LOGGING routes Django's own loggers,
the development server's access lines included, to those handlers; gunicorn's access lines go
through `config.gunicorn_logging`). It rewrites each record's message and exception text before any
handler formats it:

- e-mail addresses in any script become `<email>`: Unicode local parts (`jürgen.müller`), quoted
  local parts (`"<script>…</script>"@…`), internationalised domains (`bücher.de`, `例子.广告`) and
  address literals (`[192.0.2.1]`); percent-encoded ones (`kim%40example.com`) too;
- in URLs, the path segment that names a customer (`/customers/<id>/…`, every API route that takes a
  customer's external id) becomes `<id>`, an unsubscribe link's token becomes `<token>`, and the
  values of query parameters that carry a person (`q`, `email`, `name`, `customer`, ...) become
  `<redacted>`;
- values of fields named name/email/first_name/last_name in reprs of dicts, rows and SQL errors
  (e.g. `Key (email)=(kim@example.com)`, `'name': 'Kim'`) become `<redacted>`.

Code logs customers by their internal id; this filter is the net under that rule, for messages that
quote data they did not choose (driver errors, SMTP refusals, tracebacks, request warnings).
"""

from __future__ import annotations

import logging
import re

# What may not be part of an address's unquoted local part: whitespace, the separators of RFC 5322,
# braces (which RFC 5322 allows but no mailbox uses, and which open Python reprs) and the dot and
# apostrophe (allowed between other characters only, so quotes around an address stay). Any other
# character, of any script, is taken as part of the address: better too much redacted than part of
# a name left.
_ATEXT = r"""[^\s@"(),:;<>\[\]\\./'{}]"""
# (an unquoted local part starts after a character that cannot be in it: a long run of letters is
# tried once, not from each of its letters)
_LOCAL = rf"""(?:"(?:[^"\\\r\n]|\\.){{1,256}}"|(?<!{_ATEXT}){_ATEXT}{{1,256}}(?:[.']{_ATEXT}{{1,256}}){{0,16}})"""
# A domain label: anything but whitespace, ASCII punctuation other than - and _, and label separators
# (the ASCII dot and the ideographic ones IDN allows).
_LABEL = r"[^\s!-,./:-@\[-^`{-~\u3002\uff0e\uff61]{1,63}"
_DOMAIN = rf"(?:{_LABEL}(?:[.\u3002\uff0e\uff61]{_LABEL}){{1,16}}|\[[^\]\s]{{1,100}}\])"
EMAIL = re.compile(rf"{_LOCAL}@{_DOMAIN}")
# kim%40example.com, as URLs and form bodies carry it
ENCODED_EMAIL = re.compile(r"[^\s/?&=#\"'<>]{1,192}%40[^\s/?&=#\"'<>]{1,255}", re.IGNORECASE)

# URL paths naming a customer: /api/customers/<external id>/... (profiles, segments, recommendations,
# campaigns; tests/test_log_redaction.py checks this against the URLconf) and unsubscribe links.
CUSTOMER_IN_PATH = re.compile(r"(/customers/)(?!<id>)[^/?#\s\"']+")
TOKEN_IN_PATH = re.compile(r"(/unsubscribe/)(?!<token>)[^/?#\s\"']+")
PERSONAL_QUERY_VALUE = re.compile(
    r"([?&;](?:q|email|e-mail|name|first_name|last_name|customer|external_id|token|search)=)[^&#\s\"']+", re.IGNORECASE
)
PERSONAL_FIELD_VALUE = re.compile(
    r"""(?P<key>['"]?\b(?:name|email|first_name|last_name|full_name)\b['"]?\s*[:=]\s*)(?P<q>['"])(?P<value>(?:(?!(?P=q)).){0,200})(?P=q)""",
    re.IGNORECASE,
)
SQL_DETAIL = re.compile(r"(Key \((?:[^)]*\b(?:name|email)\b[^)]*)\)=\()([^)]*)(\))", re.IGNORECASE)


def redact(text: str) -> str:
    if not text:
        return text
    if "/" in text:
        text = CUSTOMER_IN_PATH.sub(r"\1<id>", text)
        text = TOKEN_IN_PATH.sub(r"\1<token>", text)
    if "=" in text:
        text = PERSONAL_QUERY_VALUE.sub(r"\1<redacted>", text)
    text = SQL_DETAIL.sub(r"\1<redacted>\3", text)
    text = PERSONAL_FIELD_VALUE.sub(lambda m: f"{m.group('key')}{m.group('q')}<redacted>{m.group('q')}", text)
    if "%" in text:
        text = ENCODED_EMAIL.sub("<email>", text)
    if "@" in text:
        text = EMAIL.sub("<email>", text)
    return text


class RedactPersonalData(logging.Filter):
    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
