"""
Keep customers' personal data out of the logs.

`RedactPersonalData` is attached to every log handler (settings.LOGGING). It rewrites each record's
message and exception text before any handler formats it: e-mail addresses become `<email>`, and
values of fields named name/email/first_name/last_name in reprs of dicts, rows and SQL errors
(e.g. `Key (email)=(kim@example.com)`, `'name': 'Kim'`) become `<redacted>`. Code logs customers by
their internal id; this filter is the net under that rule, for messages that quote data they did not
choose (driver errors, SMTP refusals, tracebacks).
"""
from __future__ import annotations

import logging
import re

EMAIL = re.compile(r"[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PERSONAL_FIELD_VALUE = re.compile(
    r"""(?P<key>['"]?\b(?:name|email|first_name|last_name|full_name)\b['"]?\s*[:=]\s*)(?P<q>['"])(?P<value>(?:(?!(?P=q)).){0,200})(?P=q)""",
    re.IGNORECASE,
)
SQL_DETAIL = re.compile(r"(Key \((?:[^)]*\b(?:name|email)\b[^)]*)\)=\()([^)]*)(\))", re.IGNORECASE)


def redact(text: str) -> str:
    if not text:
        return text
    text = SQL_DETAIL.sub(r"\1<redacted>\3", text)
    text = PERSONAL_FIELD_VALUE.sub(lambda m: f"{m.group('key')}{m.group('q')}<redacted>{m.group('q')}", text)
    return EMAIL.sub("<email>", text)


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
