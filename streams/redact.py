"""One redaction function for every text that leaves the notifier or the owners CLI.

Channel targets are credentials (a Slack webhook URL *is* its secret, a PagerDuty routing
key pages anyone who has it, a webhook URL may carry basic-auth or a token in its query),
and delivery errors quote URLs, headers and server replies. Everything that can carry
one of them (log lines, dead-letter records, alerts, CLI errors) goes through
:func:`redact` first, so the rules live in one place and one property test covers them.

What is masked (the rest of the text, such as the host and the channel kind, stays so
that the message still says where and what):

- the userinfo of a URL: ``https://user:pw@host/`` -> ``https://***@host/``;
- Slack webhook tokens: ``/services/T…/B…/<token>`` and any path on ``hooks.slack.com``;
- PagerDuty routing keys written as ``pagerduty:<key>``;
- header values of ``Authorization``, ``Cookie`` and ``X-…-Signature/Token/Key/Secret``;
- ``name=value`` and ``name: value`` pairs whose name ends in token, secret, password,
  key, sig, signature, auth or credential (query strings, JSON, free text);
- any literal the caller knows to be secret (``known``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["MASK", "RedactingFilter", "redact"]

MASK = "***"

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#\"'<>]+@")
_SLACK_HOST = re.compile(r"(?i)(hooks\.slack(?:-gov)?\.com(?::\d*)?/)[^\s\"'<>]+")
_SLACK_PATH = re.compile(r"(/services/[^/\s]+/[^/\s]+/)[^/\s?#&\"'<>]+")
_PAGERDUTY = re.compile(r"(?i)(pagerduty:\s*)[^\s\"'<>,;]+")
_HEADER = re.compile(
    r"(?i)(?<![\w-])((?:proxy-)?authorization|(?:set-)?cookie"
    r"|x-[\w-]*(?:signature|token|key|secret|auth)[\w-]*)"
    r"([\"']?\s*:\s*[\"']?)([^\r\n\"']+)"
)
_PAIR = re.compile(
    r"(?i)(?<![\w.-])([\w.-]*?(?:token|secret|passw(?:or)?d|pwd|pass|key|sig|signature"
    r"|auth|authorization|credentials?))"
    r"([\"']?\s*[=:]\s*[\"']?)"
    r"((?:(?:bearer|basic|token|digest)\s+)?[^\s&;,\"'<>]+)"
)


def redact(text: object, *, known: Iterable[str] = ()) -> str:
    """``text`` with every credential replaced by ``***``; ``known`` adds literal secrets.

    Idempotent (redacting twice changes nothing more), and never raises: it runs on
    error paths."""
    out = str(text)
    for secret in known:
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    out = _USERINFO.sub(rf"\1{MASK}@", out)
    out = _SLACK_HOST.sub(rf"\1{MASK}", out)
    out = _SLACK_PATH.sub(rf"\1{MASK}", out)
    out = _PAGERDUTY.sub(rf"\1{MASK}", out)
    out = _HEADER.sub(rf"\1\2{MASK}", out)
    return _PAIR.sub(rf"\1\2{MASK}", out)


class RedactingFilter(logging.Filter):
    """Redacts a record's message, arguments and traceback before any handler sees it.

    Attached to the notifier's loggers, so an exception text that quotes a URL (aiohttp
    errors do) cannot reach a log file in the clear."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is, redacted
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
