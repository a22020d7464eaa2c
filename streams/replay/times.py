"""One parser for the times an analyst types: ``--from``, ``--to`` and ``--expect``'s
``change_at`` read alike (no Kafka here, so the report can use it too)."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.errors import ConfigError

__all__ = ["parse_time"]


def parse_time(text: str) -> int:
    """RFC 3339 (``2026-11-01T00:00Z``) or epoch milliseconds, as epoch ms."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"time {text!r}: expected RFC 3339 such as 2026-11-01T00:00Z, or epoch ms"
        ) from exc
    if stamp.tzinfo is None:
        raise ConfigError(f"time {text!r} has no timezone; add Z for UTC")
    return int(stamp.astimezone(UTC).timestamp() * 1000)
