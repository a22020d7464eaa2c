"""Dead-letter envelopes: they say why and where, keep the bytes, and always fit in 1 MB."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.contract.dead_letters import (
    ENVELOPE_KEYS,
    MAX_DETAIL_CHARS,
    MAX_ENVELOPE_BYTES,
    MAX_KEY_BYTES,
    PROCESSING_ERROR,
    UNSCORABLE,
    DeadLetterSource,
    dead_letter,
    dead_letter_event,
)
from streams.contract.events import Rejected, parse_predictions, parse_timestamp_ms

RECORD_MS = 1_795_000_000_000
SOURCE_KEYS = {"topic", "partition", "offset", "key_b64", "key_size"}
MB = 1_000_000


def _decode(envelope: bytes) -> dict[str, Any]:
    assert len(envelope) <= MAX_ENVELOPE_BYTES
    doc = orjson.loads(envelope)
    assert ENVELOPE_KEYS <= set(doc)
    assert doc["dlq_schema"] == 1
    assert len(doc["detail"]) <= MAX_DETAIL_CHARS
    assert doc["source"] is None or set(doc["source"]) == SOURCE_KEYS
    return doc


# Sizes up to several MB, built from a short pattern so that hypothesis stays fast; the
# pattern may hold multi-byte characters, JSON escapes and lone surrogates.
any_chars = st.characters(blacklist_categories=())  # lone surrogates too
big_text = st.builds(
    lambda piece, n: (piece * (n // max(1, len(piece)) + 1))[:n],
    st.text(any_chars, min_size=1, max_size=8),
    st.integers(0, 3_000) | st.integers(700_000, 3 * MB),
)
big_bytes = st.builds(
    lambda piece, n: (piece * (n // len(piece) + 1))[:n],
    st.binary(min_size=1, max_size=8),
    st.integers(0, 3_000) | st.integers(700_000, 3 * MB),
)
sizes = st.sampled_from([0, 1, 1_000, 749_000, 750_000, MB, 2 * MB])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reason=st.text(max_size=10) | big_text,
    detail=big_text,
    original=big_bytes | sizes.map(lambda n: b"\x00" * n),
    key=st.none() | big_bytes,
    topic=st.text(max_size=10) | big_text,
    index=st.none() | st.integers(0, 10**6),
)
@example(reason="x", detail="d" * 3 * MB, original=b"{" * 3 * MB, key=b"k" * MB, topic="t", index=0)
@example(
    reason="\ud800", detail="\x00\ud800" * MB, original=b"", key=None, topic="\udfff", index=None
)
def test_parse_rejections_always_fit_in_one_megabyte(
    reason: str, detail: str, original: bytes, key: bytes | None, topic: str, index: int | None
) -> None:
    rejected = Rejected(reason, detail, index, original)
    doc = _decode(dead_letter(rejected, topic=topic, partition=3, offset=42, key=key))
    kept = base64.b64decode(doc["original_b64"])
    assert original.startswith(kept)
    assert doc["original_size"] == len(original)
    assert doc["detail_size"] == len(detail)
    assert doc["index"] == index
    over = (
        len(kept) < len(original)
        or len(detail) > MAX_DETAIL_CHARS
        or len(reason) > 200
        or len(topic) > 256
        or _key_cut(key)
    )
    assert doc["truncated"] or not over
    if not doc["truncated"]:
        assert kept == original
        assert (doc["reason"], doc["detail"]) == (_json_safe(reason), _json_safe(detail))
        assert doc["source"]["topic"] == _json_safe(topic)
    if key is not None:
        assert key.startswith(base64.b64decode(doc["source"]["key_b64"]))
        assert doc["source"]["key_size"] == len(key)


def _json_safe(text: str) -> str:
    """What the envelope writes for text it did not cut: lone surrogates escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _key_cut(key: bytes | None) -> bool:
    return key is not None and len(key) > MAX_KEY_BYTES


field_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(any_chars, max_size=20)
    | big_text
    | st.lists(st.integers(), max_size=3)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reason=st.text(max_size=10) | big_text,
    detail=big_text,
    fields=st.dictionaries(
        st.text(any_chars, max_size=80).filter(lambda k: k not in ENVELOPE_KEYS),
        field_values,
        max_size=40,
    ),
    original=st.none() | big_bytes,
    source=st.none()
    | st.builds(DeadLetterSource, big_text, st.integers(0, 99), st.integers(0), big_bytes),
)
def test_other_dead_letters_always_fit_in_one_megabyte(
    reason: str,
    detail: str,
    fields: dict[str, object],
    original: bytes | None,
    source: DeadLetterSource | None,
) -> None:
    doc = _decode(
        dead_letter_event(reason, detail, fields=fields, original=original, source=source)
    )
    assert doc["index"] is None
    assert (doc["source"] is None) == (source is None)
    if original is None:
        assert doc["original_b64"] is None
    else:
        assert original.startswith(base64.b64decode(doc["original_b64"]))
        assert doc["original_size"] == len(original)
    if doc["truncated"] is False:
        assert (doc["reason"], doc["detail"]) == (_json_safe(reason), _json_safe(detail))
        stored = {_json_safe(k): _as_stored(v) for k, v in fields.items()}
        assert {k: doc[k] for k in stored} == stored


def _as_stored(value: object) -> object:
    """Scalars as JSON has them (nan and inf as null), anything else as its repr."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return repr(value)
    if isinstance(value, str):
        return _json_safe(value)
    if value is None or isinstance(value, int | float):
        return orjson.loads(orjson.dumps(value))
    return _json_safe(repr(value))


@given(st.binary(max_size=200), st.none() | st.binary(max_size=40), st.none() | st.integers(0, 9))
def test_dead_letter_envelope_decodes_back_to_original(
    original: bytes, key: bytes | None, index: int | None
) -> None:
    rejected = Rejected("invalid_json", "message is not valid JSON", index, original)
    env = _decode(dead_letter(rejected, topic="predictions", partition=3, offset=42, key=key))
    assert base64.b64decode(env["original_b64"]) == original
    assert env["original_size"] == len(original)
    assert env["truncated"] is False
    assert env["source"] == {
        "topic": "predictions",
        "partition": 3,
        "offset": 42,
        "key_b64": None if key is None else base64.b64encode(key).decode(),
        "key_size": None if key is None else len(key),
    }
    assert (env["reason"], env["index"], env["dlq_schema"]) == ("invalid_json", index, 1)
    assert (env["detail"], env["detail_size"]) == ("message is not valid JSON", 25)


def test_dead_letter_of_an_oversized_message_says_truncated() -> None:
    raw = b"[" + b" " * 200_000 + b"]"
    (_, (r,)) = parse_predictions(raw, record_timestamp_ms=RECORD_MS, max_bytes=100_000)
    env = _decode(dead_letter(r, topic="t", partition=0, offset=0, key=b"k"))
    assert len(base64.b64decode(env["original_b64"])) == 65_536
    assert (env["original_size"], env["truncated"]) == (len(raw), True)


def test_a_900_kb_bad_value_in_the_detail_is_cut_and_the_rest_fits() -> None:
    # before: detail carried the whole value, and only original was capped (at 512 KiB)
    r = Rejected("invalid_value", "bad value " + "x" * 900_000, 0, b"{" * 900_000)
    envelope = dead_letter(r, topic="t", partition=0, offset=0, key=b"k" * 100_000)
    env = _decode(envelope)
    assert env["detail"].startswith("bad value xxx") and "900010 chars" in env["detail"]
    assert (env["detail_size"], env["truncated"]) == (900_010, True)
    assert env["source"]["key_size"] == 100_000
    assert len(base64.b64decode(env["source"]["key_b64"])) == MAX_KEY_BYTES
    # what is left goes to original, leaving room for a Kafka key and framing
    assert 700_000 < len(base64.b64decode(env["original_b64"])) < 750_000
    assert MAX_ENVELOPE_BYTES - 8_192 < len(envelope) <= MAX_ENVELOPE_BYTES - 4_096


def test_unscorable_pair_keeps_its_fields() -> None:
    env = _decode(
        dead_letter_event(
            UNSCORABLE,
            "regression needs numeric prediction and label, got 1.5 and 'cat'",
            fields={"prediction_id": "p-1", "model_id": "m", "prediction": 1.5, "label": "cat"},
        )
    )
    assert env["reason"] == "unscorable"
    assert (env["prediction_id"], env["model_id"], env["prediction"], env["label"]) == (
        "p-1",
        "m",
        1.5,
        "cat",
    )
    assert (env["source"], env["original_b64"], env["original_size"]) == (None, None, None)
    assert env["truncated"] is False


def test_processing_error_names_exception_and_source() -> None:
    try:
        raise KeyError("x" * 3_000_000)
    except KeyError as exc:
        error = exc
    env = _decode(
        dead_letter_event(
            PROCESSING_ERROR,
            f"{type(error).__name__}: {error}",
            fields={"error_type": type(error).__name__},
            original=b"\xff" * 2_000_000,
            source=DeadLetterSource("outcomes", 2, 7, b"fraud"),
        )
    )
    assert env["error_type"] == "KeyError" and env["detail"].startswith("KeyError: 'xxx")
    assert env["source"] == {
        "topic": "outcomes",
        "partition": 2,
        "offset": 7,
        "key_b64": base64.b64encode(b"fraud").decode(),
        "key_size": 5,
    }
    assert env["original_size"] == 2_000_000 and env["truncated"] is True


def test_extra_fields_may_not_overwrite_the_envelope() -> None:
    with pytest.raises(ValueError, match="reason"):
        dead_letter_event("unscorable", "d", fields={"reason": "forged"})


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-21T10:00:00" + "0" * 900_000,  # no offset
        "2026-02-30T10:00:00." + "1" * 900_000 + "Z",  # the RFC 3339 shape, no such day
        "x" * 900_000,
        "2026-99-21T10:00:00Z" + " " * 900_000,
    ],
)
def test_timestamp_details_cut_the_bad_value_at_the_source(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_timestamp_ms(value)
    message = str(caught.value)
    assert len(message) < 400, message[:400]
    raw = orjson.dumps({"prediction_id": "p", "model_id": "m", "prediction": 1, "timestamp": value})
    _, (rejected,) = parse_predictions(raw, record_timestamp_ms=RECORD_MS)
    assert rejected.reason == "invalid_timestamp" and len(rejected.detail) < 450
