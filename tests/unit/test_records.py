"""The event contract: parsing never raises, valid events survive intact, bad ones say why."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams.contract.events import (
    DAY_MS,
    MAX_SCALAR_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TIMESTAMP_MS,
    MIN_EVENT_TIME_MS,
    REASONS,
    GroundTruth,
    Prediction,
    Rejected,
    format_timestamp_ms,
    ground_truth_from_dict,
    parse_ground_truth,
    parse_predictions,
    parse_timestamp_ms,
    prediction_from_dict,
)

RECORD_MS = 1_795_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
PRED_KEYS = {
    "prediction_id",
    "model_id",
    "model_version",
    "timestamp",
    "prediction",
    "score",
    "features",
    "segment",
}

# --- strategies -----------------------------------------------------------------------------

# the id grammar spelled as categories, independently of its implementation (isprintable)
id_chars = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"))
ids = st.text(id_chars, min_size=1, max_size=256)
LATEST_MS = RECORD_MS + DAY_MS  # the latest event time a record at RECORD_MS accepts
finite = st.floats(allow_nan=False, allow_infinity=False)
json_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson round-trips
scalars = st.one_of(st.text(max_size=20), json_ints, finite, st.booleans())
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
in_window = st.datetimes(  # event times a record at RECORD_MS accepts, a day of slack inside
    min_value=datetime(2000, 1, 2), max_value=datetime(2026, 11, 18), timezones=offsets
)


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[object, int | None]:
    """(value to put in the event, expected epoch ms or None for 'use the record time')."""
    kind = draw(st.sampled_from(["absent", "null", "ms", "rfc3339"]))
    if kind in ("absent", "null"):
        return kind, None
    if kind == "ms":
        ms = draw(st.integers(min_value=MIN_EVENT_TIME_MS, max_value=LATEST_MS))
        return ms, ms
    dt = draw(in_window)
    text = dt.isoformat()
    if dt.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text.replace("+00:00", draw(st.sampled_from(["Z", "z"])))
    return text, (dt - EPOCH) // MS


@st.composite
def predictions(draw: st.DrawFn) -> tuple[dict[str, Any], Prediction]:
    """A valid prediction event and the record it must parse to."""
    pid, model_id, prediction = draw(ids), draw(ids), draw(scalars)
    event: dict[str, Any] = {"prediction_id": pid, "model_id": model_id, "prediction": prediction}
    ts_value, ts_ms = draw(timestamps())
    if ts_value == "null":
        event["timestamp"] = None
    elif ts_value != "absent":
        event["timestamp"] = ts_value
    version = draw(st.none() | st.text(max_size=10) | json_ints | finite)
    if version is not None:
        event["model_version"] = version
    score = draw(st.none() | finite | st.integers(-(10**6), 10**6))
    if score is not None:
        event["score"] = score
    segment = draw(st.none() | st.text(max_size=10))
    if segment is not None:
        event["segment"] = segment
    if draw(st.booleans()):
        event["features"] = draw(st.dictionaries(st.text(max_size=8), scalars, max_size=4))
    extra = draw(st.dictionaries(st.text(max_size=8), scalars, max_size=3))
    event.update({k: v for k, v in extra.items() if k not in PRED_KEYS})
    expected = Prediction(
        prediction_id=pid,
        model_id=model_id,
        model_version=None if version is None else str(version),
        timestamp_ms=RECORD_MS if ts_ms is None else ts_ms,
        prediction=prediction,
        score=None if score is None else float(score),
        segment=segment,
    )
    return event, expected


@st.composite
def labels(draw: st.DrawFn) -> tuple[dict[str, Any], GroundTruth]:
    pid, label = draw(ids), draw(scalars)
    event: dict[str, Any] = {"prediction_id": pid, "label": label}
    ts_value, ts_ms = draw(timestamps())
    if ts_value == "null":
        event["timestamp"] = None
    elif ts_value != "absent":
        event["timestamp"] = ts_value
    return event, GroundTruth(pid, label, RECORD_MS if ts_ms is None else ts_ms)


# (mutation, expected reason): each breaks exactly one rule of an otherwise valid prediction.
BREAKAGES: list[tuple[str, Any, str]] = [
    ("prediction_id", ..., "missing_field"),
    ("model_id", None, "missing_field"),
    ("prediction", ..., "missing_field"),
    ("prediction_id", 123, "wrong_type"),
    ("model_id", ["fraud"], "wrong_type"),
    ("prediction_id", "", "invalid_id"),
    ("model_id", "m" * 257, "invalid_id"),
    ("model_id", "fraud eu", "invalid_id"),
    ("prediction_id", "\x00watermark", "invalid_id"),
    ("model_id", "fraud\u200b", "invalid_id"),
    ("prediction", "x" * (MAX_SCALAR_LENGTH + 1), "invalid_value"),
    ("model_version", "v" * (MAX_TAG_LENGTH + 1), "invalid_value"),
    ("segment", "s" * (MAX_TAG_LENGTH + 1), "invalid_value"),
    ("prediction", {"class": 1}, "wrong_type"),
    ("prediction", [1, 0], "wrong_type"),
    ("timestamp", "2026-11-21T10:00:00", "invalid_timestamp"),
    ("timestamp", -1, "invalid_timestamp"),
    ("timestamp", 1.5e12, "invalid_timestamp"),
    ("timestamp", True, "invalid_timestamp"),
    ("timestamp", MIN_EVENT_TIME_MS - 1, "timestamp_out_of_range"),
    ("timestamp", LATEST_MS + 1, "timestamp_out_of_range"),
    ("timestamp", "2999-01-01T00:00:00Z", "timestamp_out_of_range"),
    ("score", "high", "wrong_type"),
    ("score", True, "wrong_type"),
    ("model_version", False, "wrong_type"),
    ("features", [1, 2], "wrong_type"),
    ("segment", 7, "wrong_type"),
]


@st.composite
def broken_predictions(draw: st.DrawFn) -> tuple[Any, str]:
    event, _ = draw(predictions())
    index = draw(st.integers(min_value=-1, max_value=len(BREAKAGES) - 1))
    if index == -1:
        return draw(scalars | st.lists(scalars, max_size=2) | st.none()), "not_an_object"
    field, value, reason = BREAKAGES[index]
    broken = dict(event)
    if value is ...:
        broken.pop(field, None)
    else:
        broken[field] = value
    return broken, reason


def parse(raw: bytes | None, **kwargs: Any) -> tuple[list[Prediction], list[Rejected]]:
    return parse_predictions(raw, record_timestamp_ms=RECORD_MS, **kwargs)


# --- properties -----------------------------------------------------------------------------


def _check_accounting(raw: bytes) -> None:
    for parser in (parse_predictions, parse_ground_truth):
        records, rejected = parser(raw, record_timestamp_ms=RECORD_MS)
        assert all(r.reason in REASONS for r in rejected)
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, list):
            assert len(records) + len(rejected) == len(doc)
            assert sorted(r.index for r in rejected if r.index is not None) == [
                r.index for r in rejected
            ]
        else:
            assert len(records) + len(rejected) == 1
            assert all(r.index is None for r in rejected)


@given(st.binary(max_size=300))
@example(b"\xff")
@example(b"   ")
@example(b"[[[[]]]]")
def test_arbitrary_bytes_are_parsed_or_rejected(raw: bytes) -> None:
    _check_accounting(raw)


json_values = st.recursive(
    st.none() | scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@given(st.lists(json_values | predictions().map(lambda p: p[0]), max_size=6) | json_values)
def test_arbitrary_json_is_parsed_or_rejected(doc: Any) -> None:
    _check_accounting(orjson.dumps(doc))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(predictions(), st.booleans())
def test_valid_prediction_round_trips_field_by_field(
    case: tuple[dict[str, Any], Prediction], as_array: bool
) -> None:
    event, expected = case
    raw = orjson.dumps([event] if as_array else event)
    records, rejected = parse(raw)
    assert rejected == []
    assert records == [expected]
    assert type(records[0].prediction) is type(expected.prediction)


@given(labels())
def test_valid_label_round_trips(case: tuple[dict[str, Any], GroundTruth]) -> None:
    event, expected = case
    records, rejected = parse_ground_truth(orjson.dumps(event), record_timestamp_ms=RECORD_MS)
    assert (records, rejected) == ([expected], [])
    assert type(records[0].label) is type(expected.label)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(predictions() | broken_predictions(), max_size=8))
def test_bad_elements_never_discard_neighbours(mixed: list[tuple[Any, Any]]) -> None:
    records, rejected = parse(orjson.dumps([element for element, _ in mixed]))
    assert records == [p for _, p in mixed if isinstance(p, Prediction)]
    bad = [(i, element, reason) for i, (element, reason) in enumerate(mixed) if type(reason) is str]
    assert [(r.index, r.reason) for r in rejected] == [(i, reason) for i, _, reason in bad]
    for r, (_, element, _) in zip(rejected, bad, strict=True):
        assert orjson.loads(r.original) == element


# --- each reason, by hand -------------------------------------------------------------------

OK = {"prediction_id": "p-1", "model_id": "fraud", "prediction": 1}


def _with(**changes: Any) -> bytes:
    event = {**OK, **changes}
    return orjson.dumps({k: v for k, v in event.items() if v is not ...})


@pytest.mark.parametrize(
    ("raw", "reason", "named"),
    [
        (b"x" * 1001, "oversized", "1001 bytes"),
        (b'{"prediction_id": "\xff"}', "invalid_utf8", "UTF-8"),
        (b'{"prediction_id": "p-1",', "invalid_json", "JSON"),
        (None, "empty_message", "empty"),
        (b"", "empty_message", "empty"),
        (b" \n", "empty_message", "whitespace"),
        (b'"p-1"', "not_an_object", "object"),
        (b"null", "not_an_object", "object"),
        (_with(model_id=...), "missing_field", "'model_id'"),
        (_with(prediction=None), "missing_field", "'prediction'"),
        (_with(prediction_id=42), "wrong_type", "'prediction_id'"),
        (_with(features="amount=3"), "wrong_type", "'features'"),
        (_with(prediction_id="p" * 257), "invalid_id", "'prediction_id'"),
        (_with(model_id=""), "invalid_id", "'model_id'"),
        (_with(model_id="fraud\teu"), "invalid_id", "U+0009"),
        (_with(segment="s" * 257), "invalid_value", "'segment'"),
        (_with(timestamp="2026-11-21T10:00:00"), "invalid_timestamp", "'timestamp'"),
        (_with(timestamp=1_000), "timestamp_out_of_range", "'timestamp'"),
    ],
)
def test_each_reason_is_reachable_and_named(raw: bytes | None, reason: str, named: str) -> None:
    records, rejected = parse(raw, max_bytes=1000)
    assert records == []
    assert len(rejected) == 1
    assert rejected[0].reason == reason
    assert named in rejected[0].detail
    assert rejected[0].index is None
    assert rejected[0].original == (raw or b"")


def test_every_reason_has_an_example() -> None:
    marks = test_each_reason_is_reachable_and_named.pytestmark  # type: ignore[attr-defined]
    covered = {case[1] for mark in marks if mark.name == "parametrize" for case in mark.args[1]}
    assert covered == set(REASONS)


def test_label_rules_mirror_prediction_rules() -> None:
    raw = orjson.dumps(
        [
            {"prediction_id": "a", "label": 0},
            {"prediction_id": "b"},
            {"prediction_id": "c", "label": {"y": 1}},
            {"prediction_id": "", "label": 1},
            {"prediction_id": "e", "label": "fraud", "timestamp": "2026-11-18 10:00:00+01:00"},
            {"prediction_id": "f g", "label": 1},
            {"prediction_id": "h", "label": "y" * (MAX_SCALAR_LENGTH + 1)},
            {"prediction_id": "i", "label": 1, "timestamp": LATEST_MS + 1},
            {"prediction_id": "j", "label": "y" * MAX_SCALAR_LENGTH, "timestamp": LATEST_MS},
        ]
    )
    records, rejected = parse_ground_truth(raw, record_timestamp_ms=RECORD_MS)
    assert records == [
        GroundTruth("a", 0, RECORD_MS),
        GroundTruth("e", "fraud", 1_794_996_000_000 - 3_600_000),
        GroundTruth("j", "y" * MAX_SCALAR_LENGTH, LATEST_MS),
    ]
    assert [(r.index, r.reason) for r in rejected] == [
        (1, "missing_field"),
        (2, "wrong_type"),
        (3, "invalid_id"),
        (5, "invalid_id"),
        (6, "invalid_value"),
        (7, "timestamp_out_of_range"),
    ]
    assert "'label'" in rejected[0].detail


def test_empty_array_is_nothing_and_no_rejection() -> None:
    assert parse(b"[]") == ([], [])
    assert parse(b" [ ] ") == ([], [])


def test_unknown_fields_are_ignored_and_model_ids_interned() -> None:
    raw = orjson.dumps(
        [{**OK, "prediction_id": str(i), "future_field": {"x": [1]}} for i in (1, 2)]
    )
    (a, b), rejected = parse(raw)
    assert rejected == []
    assert a.model_id is b.model_id


def test_deeply_nested_element_falls_back_to_whole_message() -> None:
    # orjson decodes 1024 levels but re-encodes only 254.
    raw = b"[" + b"[" * 300 + b"]" * 300 + b"," + orjson.dumps(OK) + b"]"
    records, rejected = parse(raw)
    assert len(records) == 1
    assert [(r.index, r.reason, r.original) for r in rejected] == [(0, "not_an_object", raw)]


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2026-11-21T10:00:00Z", 1_795_255_200_000),
        ("2026-11-21t10:00:00z", 1_795_255_200_000),
        ("2026-11-21 10:00:00Z", 1_795_255_200_000),
        ("2026-11-21T10:00:00.123Z", 1_795_255_200_123),
        ("2026-11-21T10:00:00.1239999Z", 1_795_255_200_123),
        ("2026-11-21T10:00:00.123456789+00:00", 1_795_255_200_123),
        ("2026-11-21T11:30:00+01:30", 1_795_255_200_000),
        ("2026-11-21T02:00:00-08:00", 1_795_255_200_000),
        ("1970-01-01T00:00:00Z", 0),
        (1_795_255_200_123, 1_795_255_200_123),
        (0, 0),
        (MAX_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
    ],
)
def test_timestamps_accepted(value: object, ms: int) -> None:
    assert parse_timestamp_ms(value) == ms


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2026-11-21T10:00:00", "no timezone"),
        ("2026-11-21T10:00:00.5", "no timezone"),
        ("2026-11-21T10:00Z", "RFC 3339"),
        ("20261121T100000Z", "RFC 3339"),
        ("2026-11-21T10:00:00+0200", "RFC 3339"),
        ("2026-W47-1T10:00:00Z", "RFC 3339"),
        ("2026-02-30T10:00:00Z", "RFC 3339"),
        ("2026-11-21T25:00:00Z", "RFC 3339"),
        ("1969-12-31T23:59:59Z", "outside"),
        ("", "RFC 3339"),
        (-1, "outside"),
        (MAX_TIMESTAMP_MS + 1, "outside"),
        (True, "boolean"),
        (1.7e12, "number"),
        (None, "null"),
        ([2026], "array"),
    ],
)
def test_timestamps_refused(value: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_timestamp_ms(value)


@given(aware)
def test_rfc3339_agrees_with_datetime(dt: datetime) -> None:
    assert parse_timestamp_ms(dt.isoformat()) == (dt - EPOCH) // MS


def test_naive_timestamp_in_event_is_invalid_timestamp() -> None:
    _, rejected = parse(_with(timestamp="2026-11-21T10:00:00"))
    assert rejected[0].reason == "invalid_timestamp"
    assert "'timestamp'" in rejected[0].detail
    assert "no timezone" in rejected[0].detail


@pytest.mark.parametrize("raw", [_with(), _with(timestamp=None)])
def test_missing_or_null_timestamp_uses_record_time(raw: bytes) -> None:
    (p,), _ = parse(raw)
    assert p.timestamp_ms == RECORD_MS


# --- timestamp bounds -----------------------------------------------------------------------

RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@st.composite
def bounded_times(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(event ms, record ms, max skew, min event time), often right at a bound."""
    record = draw(st.sampled_from([-1, 0]) | st.integers(1, MAX_TIMESTAMP_MS))
    skew = draw(st.sampled_from([0, DAY_MS]) | st.integers(0, 10 * DAY_MS))
    earliest = draw(st.sampled_from([0, MIN_EVENT_TIME_MS]) | st.integers(0, MAX_TIMESTAMP_MS))
    near = st.integers(-2, 2)
    ts = draw(
        st.integers(0, MAX_TIMESTAMP_MS)
        | near.map(lambda d: record + skew + d)
        | near.map(lambda d: earliest + d)
        | st.integers(0, max(0, record))  # late data
    )
    return min(max(ts, 0), MAX_TIMESTAMP_MS), record, skew, earliest


@given(bounded_times(), st.booleans())
def test_event_time_may_not_run_ahead_of_the_record_nor_before_the_minimum(
    times: tuple[int, int, int, int], as_text: bool
) -> None:
    ts, record, skew, earliest = times
    value: object = format_timestamp_ms(ts) if as_text else ts
    bounds = {"max_skew_ms": skew, "min_timestamp_ms": earliest}
    event = {**OK, "timestamp": value}
    records, rejected = parse_predictions(orjson.dumps(event), record_timestamp_ms=record, **bounds)
    labels, label_rejected = parse_ground_truth(
        orjson.dumps({"prediction_id": "p", "label": 1, "timestamp": value}),
        record_timestamp_ms=record,
        **bounds,
    )
    too_early = ts < earliest
    too_late = record > 0 and ts > record + skew
    if not (too_early or too_late):
        assert [p.timestamp_ms for p in records] == [g.timestamp_ms for g in labels] == [ts]
        assert prediction_from_dict(event, record, **bounds) == records[0]
        return
    assert [r.reason for r in rejected + label_rejected] == ["timestamp_out_of_range"] * 2
    detail = rejected[0].detail
    assert label_rejected[0].detail == detail
    assert RFC3339_MS.findall(detail) == [
        format_timestamp_ms(ts),
        format_timestamp_ms(earliest if too_early else record),
    ]
    with pytest.raises(ValueError, match="timestamp"):
        ground_truth_from_dict(
            {"prediction_id": "p", "label": 1, "timestamp": value}, record, **bounds
        )


def test_default_bounds_are_a_day_ahead_and_the_year_2000() -> None:
    def reason(ts: int, record: int = RECORD_MS) -> str | None:
        _, rejected = parse_predictions(_with(timestamp=ts), record_timestamp_ms=record)
        return rejected[0].reason if rejected else None

    assert reason(RECORD_MS + DAY_MS) is None
    assert reason(RECORD_MS + DAY_MS + 1) == "timestamp_out_of_range"
    assert reason(MIN_EVENT_TIME_MS) is None
    assert reason(MIN_EVENT_TIME_MS - 1) == "timestamp_out_of_range"
    assert reason(MIN_EVENT_TIME_MS, record=MAX_TIMESTAMP_MS) is None  # late data is fine
    assert reason(MAX_TIMESTAMP_MS, record=0) is None  # unknown record time: no future bound
    _, (r,) = parse_predictions(
        _with(timestamp=RECORD_MS + 2 * DAY_MS), record_timestamp_ms=RECORD_MS
    )
    assert r.detail == (
        "field 'timestamp': 2026-11-20T11:06:40.000Z is more than 1 day ahead of the record "
        "timestamp 2026-11-18T11:06:40.000Z"
    )


@pytest.mark.parametrize("record", [-1, 0, 1_000, RECORD_MS])
def test_missing_timestamp_still_falls_back_to_the_record_time(record: int) -> None:
    (p,), _ = parse_predictions(_with(), record_timestamp_ms=record)
    (g,), _ = parse_ground_truth(b'{"prediction_id": "p", "label": 1}', record_timestamp_ms=record)
    assert p.timestamp_ms == g.timestamp_ms == record


def test_negative_bounds_are_a_caller_error() -> None:
    with pytest.raises(ValueError, match="max_skew_ms"):
        parse(_with(), max_skew_ms=-1)
    with pytest.raises(ValueError, match="min_timestamp_ms"):
        prediction_from_dict(OK, RECORD_MS, min_timestamp_ms=-1)


# --- string bounds --------------------------------------------------------------------------


@given(st.integers(MAX_SCALAR_LENGTH - 3, MAX_SCALAR_LENGTH + 3), st.sampled_from("xé€😀"))
def test_string_prediction_and_label_are_bounded(length: int, char: str) -> None:
    value = char * length
    preds, bad_preds = parse(_with(prediction=value))
    labels, bad_labels = parse_ground_truth(
        orjson.dumps({"prediction_id": "p", "label": value}), record_timestamp_ms=RECORD_MS
    )
    if length <= MAX_SCALAR_LENGTH:
        assert [p.prediction for p in preds] == [g.label for g in labels] == [value]
    else:
        assert [r.reason for r in bad_preds + bad_labels] == ["invalid_value"] * 2
        assert f"at most {MAX_SCALAR_LENGTH} characters, got {length}" in bad_preds[0].detail
        assert "'label'" in bad_labels[0].detail and value not in bad_labels[0].detail


@given(
    st.sampled_from(["segment", "model_version"]),
    st.integers(MAX_TAG_LENGTH - 2, MAX_TAG_LENGTH + 2),
)
def test_segment_and_model_version_are_bounded(field: str, length: int) -> None:
    records, rejected = parse(_with(**{field: "s" * length}))
    if length <= MAX_TAG_LENGTH:
        assert getattr(records[0], field) == "s" * length
    else:
        assert [r.reason for r in rejected] == ["invalid_value"]
        assert rejected[0].detail == (
            f"field {field!r} must be at most {MAX_TAG_LENGTH} characters, got {length}"
        )


# --- oversized ------------------------------------------------------------------------------


def test_oversized_message_is_not_parsed_and_keeps_64_kib() -> None:
    raw = orjson.dumps([OK] * 5000)
    assert parse(raw, max_bytes=len(raw))[0] != []
    records, (r,) = parse(raw, max_bytes=len(raw) - 1)
    assert records == []
    assert (r.reason, r.index, r.original_size) == ("oversized", None, len(raw))
    assert r.original == raw[:65_536]
    assert f"{len(raw)} bytes" in r.detail and "65536" in r.detail
