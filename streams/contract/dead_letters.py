"""Dead-letter envelopes: why a record was set aside, where it came from, and its bytes.

Every envelope fits in :data:`MAX_ENVELOPE_BYTES` (a stock broker's ``message.max.bytes``),
whatever it is given: a dead letter that Kafka refuses would fail the batch that produced
it, again on every retry, and stop the worker. So each part has a cap (``reason`` 200
characters, ``detail`` 2,000, ``source.topic`` 256, the key 1,024 bytes, each extra field
1,024 characters, at most 32 extra fields), and ``original`` gets whatever room is left,
measured on the encoded envelope, base64 growth included, up to :data:`MAX_ENVELOPE_BYTES`
less 4 KiB: that room is for the record's Kafka key (send at most :data:`MAX_KEY_BYTES`
of it) and the record framing, which count against the broker's limit too. Anything cut
sets ``truncated``; ``original_size``, ``detail_size`` and ``source.key_size`` keep the
sizes before the cut. The envelope, as JSON::

    {"dlq_schema": 1,
     "reason": "missing_field",              # REASONS, or EVENT_REASONS, or the caller's
     "detail": "field 'model_id' is missing",
     "detail_size": 27,                      # characters before any cut
     "index": 2,                             # element of a JSON array; null for the message
     "source": {"topic": "predictions", "partition": 0, "offset": 41,
                "key_b64": null, "key_size": null},  # null when there is no source record
     "original_b64": "...", "original_size": 57,     # null when there are no bytes
     "truncated": false,
     ...}                                    # extra fields of dead_letter_event

Bytes travel base64-encoded so that invalid UTF-8 survives JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from streams.contract.events import Rejected

__all__ = [
    "DLQ_SCHEMA",
    "ENVELOPE_KEYS",
    "EVENT_REASONS",
    "MAX_DETAIL_CHARS",
    "MAX_ENVELOPE_BYTES",
    "MAX_KEY_BYTES",
    "PROCESSING_ERROR",
    "UNSCORABLE",
    "DeadLetterSource",
    "dead_letter",
    "dead_letter_event",
]

MAX_ENVELOPE_BYTES: Final = 1_000_000
"""Largest encoded envelope: stock Kafka's ``message.max.bytes`` (1,000,012) less room."""

MAX_DETAIL_CHARS: Final = 2_000
MAX_REASON_CHARS: Final = 200
MAX_TOPIC_CHARS: Final = 256
MAX_KEY_BYTES: Final = 1_024
"""Bytes of the source key kept in the envelope; also the most a DLQ record's key should be."""
MAX_FIELD_CHARS: Final = 1_024
MAX_FIELD_NAME_CHARS: Final = 64
MAX_FIELDS: Final = 32

DLQ_SCHEMA: Final = 1

UNSCORABLE: Final = "unscorable"
"""A joined pair whose error cannot be computed (a text label for a regression model)."""
PROCESSING_ERROR: Final = "processing_error"
"""A record whose processing raised, again on retry, so it is set aside alone."""
MODEL_LIMIT: Final = "model_limit"
"""A prediction of a model beyond the partition's cap on models (``max_models``)."""
EVENT_REASONS: Final = (UNSCORABLE, PROCESSING_ERROR, MODEL_LIMIT)
"""Reasons of dead letters that are not parse rejections (those are ``events.REASONS``)."""

ENVELOPE_KEYS: Final = frozenset(
    (
        "dlq_schema",
        "reason",
        "detail",
        "detail_size",
        "index",
        "source",
        "original_b64",
        "original_size",
        "truncated",
    )
)
"""Keys every envelope has; extra fields may not reuse them."""

_INT64: Final = 2**63
_KAFKA_ROOM: Final = 4_096
"""Left free under :data:`MAX_ENVELOPE_BYTES` for the record key and framing."""


@dataclass(frozen=True, slots=True)
class DeadLetterSource:
    """The Kafka record a dead letter came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


def dead_letter(
    rejected: Rejected, *, topic: str, partition: int, offset: int, key: bytes | None
) -> bytes:
    """The DLQ message for a parse rejection, at most :data:`MAX_ENVELOPE_BYTES` long."""
    return _envelope(
        rejected.reason,
        rejected.detail,
        index=rejected.index,
        fields=None,
        original=rejected.original,
        original_size=rejected.original_size,
        source=DeadLetterSource(topic, partition, offset, key),
    )


def dead_letter_event(
    reason: str,
    detail: str,
    *,
    fields: Mapping[str, object] | None = None,
    original: bytes | None = None,
    source: DeadLetterSource | None = None,
) -> bytes:
    """A dead letter that is not a parse rejection, capped like :func:`dead_letter`.

    ``fields`` are extra top-level keys (scalars; anything else is stored as its repr),
    e.g. for an unscorable pair::

        dead_letter_event(UNSCORABLE, u.detail, fields={"prediction_id": u.prediction_id,
            "model_id": u.model_id, "prediction": u.prediction, "label": u.label})

    and for a record whose processing raised::

        dead_letter_event(PROCESSING_ERROR, f"{type(exc).__name__}: {exc}",
            fields={"error_type": type(exc).__name__}, original=msg.value,
            source=DeadLetterSource(msg.topic, msg.partition, msg.offset, msg.key))

    Raises ValueError when a field name is one of :data:`ENVELOPE_KEYS`: a caller bug.
    """
    if fields:
        clash = ENVELOPE_KEYS.intersection(fields)
        if clash:
            raise ValueError(f"fields may not reuse envelope keys: {sorted(clash)}")
    return _envelope(
        reason,
        detail,
        index=None,
        fields=fields,
        original=original,
        original_size=None,
        source=source,
    )


def _envelope(
    reason: str,
    detail: str,
    *,
    index: int | None,
    fields: Mapping[str, object] | None,
    original: bytes | None,
    original_size: int | None,
    source: DeadLetterSource | None,
) -> bytes:
    cut = False
    reason_text, reason_cut = _cut(str(reason), MAX_REASON_CHARS)
    detail = str(detail)
    detail_text, detail_cut = _cut(detail, MAX_DETAIL_CHARS)
    cut = reason_cut or detail_cut
    doc: dict[str, Any] = {
        "dlq_schema": DLQ_SCHEMA,
        "reason": reason_text,
        "detail": detail_text,
        "detail_size": len(detail),
        "index": index if _is_int64(index) else None,
        "source": None,
    }
    if source is not None:
        topic, topic_cut = _cut(str(source.topic), MAX_TOPIC_CHARS)
        key = source.key
        key_cut = key is not None and len(key) > MAX_KEY_BYTES
        cut = cut or topic_cut or key_cut
        doc["source"] = {
            "topic": topic,
            "partition": source.partition if _is_int64(source.partition) else None,
            "offset": source.offset if _is_int64(source.offset) else None,
            "key_b64": None if key is None else _b64(key[:MAX_KEY_BYTES]),
            "key_size": None if key is None else len(key),
        }
    if fields:
        for n, (name, value) in enumerate(fields.items()):
            if n == MAX_FIELDS:
                cut = True
                break
            field_name, name_cut = _cut(str(name), MAX_FIELD_NAME_CHARS)
            if field_name in ENVELOPE_KEYS or field_name in doc:
                cut = True  # a cut name that now clashes: dropped rather than overwriting
                continue
            doc[field_name], value_cut = _field_value(value)
            cut = cut or name_cut or value_cut
    if original is None:
        doc.update(original_b64=None, original_size=original_size, truncated=cut)
        return orjson.dumps(doc)
    size = len(original) if original_size is None else original_size
    # Measure everything but original (with the longer "false" in place of "true"), then
    # give original the room left: base64 turns 3 bytes into 4.
    doc.update(original_b64="", original_size=size, truncated=False)
    room = MAX_ENVELOPE_BYTES - _KAFKA_ROOM - len(orjson.dumps(doc))
    keep = max(0, room // 4 * 3)
    kept = original[:keep]
    doc["original_b64"] = _b64(kept)
    doc["truncated"] = cut or len(kept) < size
    body = orjson.dumps(doc)
    if len(body) > MAX_ENVELOPE_BYTES:  # cannot happen: every part above is capped
        raise AssertionError(f"dead-letter envelope of {len(body)} bytes")
    return body


def _cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` within ``limit`` characters, and whether it was cut.

    Lone surrogates (which orjson refuses, and exception messages can carry) are written
    as backslash escapes first, so the limit holds for what is written.
    """
    size = len(text)
    clean = text[: limit + 1]  # bounds the work on a huge text
    if not clean.isascii():
        clean = clean.encode("utf-8", "backslashreplace").decode("utf-8")
    if size <= limit and len(clean) <= limit:
        return clean, False
    return f"{clean[: limit - 40]}… (cut, {size} chars)", True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _is_int64(value: object) -> bool:
    return type(value) is int and -_INT64 <= value < _INT64


def _field_value(value: object) -> tuple[object, bool]:
    """A JSON scalar orjson can write, cut to :data:`MAX_FIELD_CHARS`; True when cut."""
    if value is None or isinstance(value, bool):
        return value, False
    if isinstance(value, float):
        return float(value), False  # orjson writes nan and inf as null
    if isinstance(value, int) and -_INT64 <= value < 2 * _INT64:  # i64 and u64
        return int(value), False
    if isinstance(value, str):
        return _cut(str(value), MAX_FIELD_CHARS)
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a repr that raises (huge int, broken __repr__)
        text = f"<{type(value).__name__}>"
    return _cut(text, MAX_FIELD_CHARS)
