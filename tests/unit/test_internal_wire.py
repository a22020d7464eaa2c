"""The internal topics' wire format: outcomes, join marks and re-keyed events survive the
round trip, decoding errors say where, and every message fits under the limit."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.contract.events import MAX_TIMESTAMP_MS, Outcome
from streams.contract.internal import (
    MAX_INTERNAL_BYTES,
    JoinedOutcomes,
    JoinMark,
    decode_outcomes_message,
    encode_join_mark,
    encode_joined_outcomes,
)

finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.text(max_size=20), st.integers(-(2**53), 2**53), finite, st.booleans())
outcomes = st.builds(
    Outcome,
    prediction_id=st.text(min_size=1, max_size=30),
    model_id=st.just("fraud"),
    model_version=st.none() | st.text(max_size=8),
    event_time_ms=st.integers(0, MAX_TIMESTAMP_MS),
    label_time_ms=st.integers(0, MAX_TIMESTAMP_MS),
    prediction=scalars,
    label=scalars,
    error=finite,
)
offsets = st.dictionaries(st.sampled_from(["predictions", "ground-truth"]), st.integers(0, 10**9))


@given(st.lists(outcomes, min_size=1, max_size=20), st.integers(0, 63), offsets)
def test_outcomes_round_trip(batch: list[Outcome], join: int, at: dict[str, int]) -> None:
    (raw,) = encode_joined_outcomes(JoinedOutcomes(join, batch, at))
    decoded = decode_outcomes_message(raw)
    assert isinstance(decoded, JoinedOutcomes)
    assert (decoded.join, list(decoded.outcomes), decoded.offsets) == (join, batch, at)
    for got, want in zip(decoded.outcomes, batch, strict=True):
        assert type(got.prediction) is type(want.prediction)
        assert type(got.label) is type(want.label)


@given(st.integers(0, 63), st.integers(1, 10**6), st.none() | st.integers(0, 10**13), offsets)
def test_join_marks_round_trip(join: int, seq: int, wm: int | None, at: dict[str, int]) -> None:
    mark = JoinMark(join, seq, wm, at)
    assert decode_outcomes_message(encode_join_mark(mark)) == mark


def test_a_large_batch_is_cut_into_messages_under_the_limit_in_order() -> None:
    big = [Outcome(f"p-{i}", "fraud", None, i, i, "x" * 1000, "y" * 1000, 1.0) for i in range(2000)]
    raws = encode_joined_outcomes(JoinedOutcomes(3, big, {"predictions": 7}))
    assert len(raws) > 1 and all(len(r) <= MAX_INTERNAL_BYTES for r in raws)
    back = [o for r in raws for o in decode_outcomes_message(r).outcomes]  # type: ignore[union-attr]
    assert back == big


GOOD = {"id": "p", "m": "fraud", "v": None, "te": 1, "tl": 2, "p": 1, "y": 0, "e": 1.0}


def _msg(*items: object) -> bytes:
    return orjson.dumps({"join": 0, "outcomes": list(items), "offsets": {}})


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"[{", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (orjson.dumps({"outcomes": []}), "'join' must be an integer"),
        (_msg(1), "outcome 0 must be a JSON object"),
        (_msg(GOOD, {**GOOD, "e": "big"}), "outcome 1: key 'e'"),
        (_msg({k: v for k, v in GOOD.items() if k != "te"}), "'te' is missing"),
        (_msg({**GOOD, "te": "2026-11-21T10:00:00Z"}), "'te' must be"),
        (_msg({**GOOD, "m": None}), "'m' must be a string"),
        (_msg({**GOOD, "v": 3}), "'v' must be a string or null"),
        (_msg({**GOOD, "p": [1]}), "'p' must be"),
        (orjson.dumps({"join": 0, "seq": 1, "watermark_ms": None, "offsets": [1]}), "offsets"),
    ],
)
def test_decoding_errors_say_where(raw: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        decode_outcomes_message(raw)


def test_a_non_finite_error_is_refused_before_it_reaches_the_wire() -> None:
    bad = Outcome("p-3", "fraud", None, 1, 2, 1e308, -1e308, math.inf)
    with pytest.raises(ValueError, match="non-finite"):
        encode_joined_outcomes(JoinedOutcomes(0, [bad], {}))
