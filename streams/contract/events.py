"""The event contract: parsing and validating predictions and labels, and the joined outcome.

Pure code (no Kafka, no asyncio): the stream, replay and the producer helper all apply the
same rules, from DESIGN.md "Event contract":

- A message value is one JSON object, or a JSON array of objects of the same kind. Every
  rule applies per element, and one bad element never discards its neighbours.
- Bad input is data, not an exception: the parsers return ``(records, rejected)`` and
  each :class:`Rejected` carries a machine ``reason`` (one of :data:`REASONS`), a sentence
  naming the offending field, and the bytes to dead-letter
  (:func:`streams.contract.dead_letters.dead_letter`).
- Unknown fields are ignored, so producers can add fields before Watchkeeper knows them.
- No input can poison state: ids follow one grammar (:mod:`streams.contract.ids`), so they
  never reach internal keys; an event time may not run more than ``max_skew_ms`` ahead of
  its Kafka record's time, nor before ``min_timestamp_ms``, so one bad clock cannot push a
  watermark years ahead and expire every pending join; and string values are bounded,
  since they travel on inside outcome and dead-letter messages.

The per-element functions :func:`prediction_from_dict` and :func:`ground_truth_from_dict`
are the validators; the producer helper calls them too, raising :class:`InvalidEvent` (a
``ValueError``) at the caller instead of dead-lettering later.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import orjson

from streams.contract.features import Features, normalise_features
from streams.contract.ids import MAX_ID_LENGTH, id_problem, is_valid_id

__all__ = [
    "DAY_MS",
    "DEFAULT_MAX_BYTES",
    "MAX_ID_LENGTH",
    "MAX_SCALAR_LENGTH",
    "MAX_TAG_LENGTH",
    "MAX_TIMESTAMP_MS",
    "MIN_EVENT_TIME_MS",
    "REASONS",
    "GroundTruth",
    "InvalidEvent",
    "Outcome",
    "Prediction",
    "Rejected",
    "Scalar",
    "format_timestamp_ms",
    "ground_truth_from_dict",
    "parse_ground_truth",
    "parse_predictions",
    "parse_timestamp_ms",
    "prediction_from_dict",
    "short_repr",
]

Scalar = str | int | float | bool

REASONS: Final = (
    "oversized",
    "invalid_utf8",
    "invalid_json",
    "empty_message",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "invalid_id",
    "invalid_timestamp",
    "timestamp_out_of_range",
)

MAX_SCALAR_LENGTH: Final = 1024
"""Longest string ``prediction`` or ``label``: both travel on inside outcome messages, so a
900 KB class label must not make an internal message too large for Kafka."""

MAX_TAG_LENGTH: Final = 256
"""Longest ``model_version`` or ``segment``: short tags that label alerts and health keys."""

DAY_MS: Final = 86_400_000
"""Default ``max_skew_ms``: how far an event time may run ahead of its record's time."""

MIN_EVENT_TIME_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z, the default ``min_timestamp_ms``: no model event is older, so an
earlier time is a unit mistake (seconds for milliseconds) or a zeroed clock."""

_REPR_KEEP: Final = 100
"""Characters of a bad value's repr kept in a detail (see :func:`short_repr`)."""

DEFAULT_MAX_BYTES: Final = 1_048_576
OVERSIZED_KEEP_BYTES: Final = 65_536
"""How much of an oversized message is kept for the dead-letter topic."""

MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a ``datetime`` can hold."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One model output, as the join needs it, with its ``features`` normalised and bounded
    (:mod:`streams.contract.features`; None when the event has none). ``features_cut``
    counts the feature keys and values not kept as sent. Neither takes part in equality:
    they ride along with the prediction, for the input signals."""

    prediction_id: str
    model_id: str
    model_version: str | None
    timestamp_ms: int
    prediction: Scalar
    score: float | None
    segment: str | None
    features: Features | None = field(default=None, compare=False)
    features_cut: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What actually happened for one prediction."""

    prediction_id: str
    label: Scalar
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """An element (or a whole message) that broke the contract, on its way to the DLQ.

    ``original`` is the element re-encoded with orjson when it came from an array, else the
    message as received (cut to 64 KiB when oversized). ``original_size`` is the length
    before that cut; None means ``len(original)``.
    """

    reason: str
    detail: str
    index: int | None
    original: bytes
    original_size: int | None = None
    model_id: str | None = None  # when the element names a usable one (input_quality)


class InvalidEvent(ValueError):
    """An event that breaks the contract; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --- timestamps -----------------------------------------------------------------------------

# fromisoformat alone also takes ISO 8601 forms RFC 3339 forbids (20261121T1000Z, week
# dates, +0200, missing seconds), so the shape is checked first.
_RFC3339: Final = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)", re.ASCII
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp_ms(value: object) -> int:
    """Epoch milliseconds from an RFC 3339 string with an offset or Z, or from epoch ms.

    A string without an offset is refused rather than guessed (the join runs on event time,
    and a wrong zone shifts every event by hours). Sub-millisecond digits are truncated.
    Raises ValueError for anything else, including bools and floats.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif isinstance(value, str):
        ms = _rfc3339_ms(value)
    else:
        raise ValueError(
            f"must be an RFC 3339 string or integer epoch milliseconds, got {_json_type(value)}"
        )
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"{short_repr(value)} is outside 1970-01-01..9999-12-31")
    return ms


def format_timestamp_ms(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds (``2026-11-21T10:00:00.000Z``), for messages."""
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        return f"{ms} ms since the epoch"
    text = (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def short_repr(value: object) -> str:
    """``repr(value)`` cut to its first 100 characters plus the full length.

    Details travel in dead letters and logs: a 900 KB bad value must not travel with them.
    """
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits has no repr by default
        return f"<{type(value).__name__} too large to show>"
    if len(text) <= _REPR_KEEP:
        return text
    if isinstance(value, bytes):
        return f"{text[:_REPR_KEEP]}… ({len(value)} bytes)"
    return f"{text[:_REPR_KEEP]}… ({len(value) if isinstance(value, str) else len(text)} chars)"


def _rfc3339_ms(text: str) -> int:
    if _RFC3339.fullmatch(text) is None:
        raise ValueError(_explain_bad_timestamp(text))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:  # RFC 3339 allows lower-case t and z, fromisoformat does not
            dt = datetime.fromisoformat(text.upper())
        except ValueError as exc:
            # the message of fromisoformat may quote the whole text: cut it too
            why = str(exc)
            why = why if len(why) <= _REPR_KEEP else why[:_REPR_KEEP] + "…"
            raise ValueError(
                f"{short_repr(text)} is not a valid RFC 3339 date-time ({why})"
            ) from None
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _explain_bad_timestamp(text: str) -> str:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        dt = None
    if dt is not None and dt.tzinfo is None:
        return f"{short_repr(text)} has no timezone offset; RFC 3339 needs Z or +HH:MM"
    return f"{short_repr(text)} is not an RFC 3339 date-time like 2026-11-21T10:00:00Z"


def _latest(record_timestamp_ms: int, max_skew_ms: int, min_timestamp_ms: int) -> int:
    """The latest event time a record accepts (the earliest is ``min_timestamp_ms``).

    Events older than their record are late data, which the join handles; only the future
    is bounded, and only when the record time is known (> 0).
    """
    if max_skew_ms < 0 or min_timestamp_ms < 0:
        raise ValueError(
            f"max_skew_ms and min_timestamp_ms must be >= 0, got {max_skew_ms}, {min_timestamp_ms}"
        )
    if record_timestamp_ms > 0:
        latest = record_timestamp_ms + max_skew_ms
        return latest if latest < MAX_TIMESTAMP_MS else MAX_TIMESTAMP_MS
    return MAX_TIMESTAMP_MS


# --- per-element validators -----------------------------------------------------------------

_JSON_TYPES: Final = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _missing(obj: dict[str, Any], name: str) -> InvalidEvent:
    state = "null" if name in obj else "missing"
    return InvalidEvent("missing_field", f"field {name!r} is {state}")


def _checked_id(obj: dict[str, Any], name: str) -> str:
    """Slow path of the id check: says exactly what is wrong, or returns a str subclass."""
    value = obj.get(name)
    if value is None:
        raise _missing(obj, name)
    if not isinstance(value, str):
        raise InvalidEvent(
            "wrong_type", f"field {name!r} must be a string, got {_json_type(value)}"
        )
    problem = id_problem(value)
    if problem is not None:
        raise InvalidEvent("invalid_id", f"field {name!r} {problem}")
    return str(value)


def _checked_scalar(obj: dict[str, Any], name: str) -> Scalar:
    value = obj.get(name)
    if value is None:
        raise _missing(obj, name)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(
                "invalid_value", f"field {name!r} must be a finite number, got {value!r}"
            )
        return value
    if isinstance(value, str):
        if len(value) > MAX_SCALAR_LENGTH:
            raise InvalidEvent(
                "invalid_value",
                f"field {name!r} must be at most {MAX_SCALAR_LENGTH} characters, got {len(value)}",
            )
        return str(value)
    if isinstance(value, int):  # bool is an int
        return value
    raise InvalidEvent(
        "wrong_type",
        f"field {name!r} must be a string, number or boolean, got {_json_type(value)}",
    )


def _checked_timestamp(value: object, record_ms: int, earliest: int, latest: int) -> int:
    try:
        ms = parse_timestamp_ms(value)
    except ValueError as exc:
        raise InvalidEvent("invalid_timestamp", f"field 'timestamp': {exc}") from None
    if ms < earliest:
        raise InvalidEvent(
            "timestamp_out_of_range",
            f"field 'timestamp': {format_timestamp_ms(ms)} is before "
            f"{format_timestamp_ms(earliest)}, the earliest event time accepted",
        )
    if ms > latest:  # latest < MAX_TIMESTAMP_MS here, so it is record_ms + max_skew_ms
        raise InvalidEvent(
            "timestamp_out_of_range",
            f"field 'timestamp': {format_timestamp_ms(ms)} is more than "
            f"{_duration(latest - record_ms)} ahead of the record timestamp "
            f"{format_timestamp_ms(record_ms)}",
        )
    return ms


def _duration(ms: int) -> str:
    if ms and ms % DAY_MS == 0:
        days = ms // DAY_MS
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{ms} ms"


def _bounded_tag(value: str, name: str) -> str:
    if len(value) > MAX_TAG_LENGTH:
        raise InvalidEvent(
            "invalid_value",
            f"field {name!r} must be at most {MAX_TAG_LENGTH} characters, got {len(value)}",
        )
    return str(value)


def _version(value: object) -> str:
    if isinstance(value, str):
        return _bounded_tag(value, "model_version")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidEvent(
        "wrong_type",
        f"field 'model_version' must be a string or number, got {_json_type(value)}",
    )


def _optional_score(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        score = float(value)
        if math.isfinite(score):
            return score
        raise InvalidEvent("invalid_value", f"field 'score' must be finite, got {value!r}")
    raise InvalidEvent("wrong_type", f"field 'score' must be a number, got {_json_type(value)}")


def _optional_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _bounded_tag(value, name)
    raise InvalidEvent("wrong_type", f"field {name!r} must be a string, got {_json_type(value)}")


def _not_an_object(value: object) -> InvalidEvent:
    return InvalidEvent("not_an_object", f"event must be a JSON object, got {_json_type(value)}")


def _slot_setters(cls: type[Any]) -> tuple[Callable[[Any, Any], None], ...]:
    """Setters for each field of a frozen slots dataclass, bypassing its ``__init__``.

    A frozen dataclass's ``__init__`` routes every field through ``object.__setattr__``:
    for a 7-field Prediction that is ~0.6 of the ~1.6 us a parsed element costs. Setting the
    slot descriptors directly halves it. Valid only while the class is a plain frozen slots
    dataclass (no ``__post_init__``), which is checked here at import.
    """
    names = tuple(f.name for f in fields(cls))
    if names != cls.__slots__ or hasattr(cls, "__post_init__"):
        raise RuntimeError(f"{cls.__name__} is no longer a plain frozen slots dataclass")
    return tuple(cls.__dict__[name].__set__ for name in names)


_new = object.__new__
(_p_id, _p_model, _p_version, _p_ts, _p_pred, _p_score, _p_segment, _p_features, _p_cut) = (
    _slot_setters(Prediction)
)
_g_id, _g_label, _g_ts = _slot_setters(GroundTruth)
_intern = sys.intern
_isfinite = math.isfinite


def prediction_from_dict(
    obj: object,
    record_timestamp_ms: int,
    /,
    *,
    max_skew_ms: int = DAY_MS,
    min_timestamp_ms: int = MIN_EVENT_TIME_MS,
) -> Prediction:
    """Validate one decoded prediction event; raises :class:`InvalidEvent`.

    ``record_timestamp_ms`` is the Kafka record's time: it stands in for a missing event
    time, and, when > 0, an event time more than ``max_skew_ms`` ahead of it is refused
    (``timestamp_out_of_range``), as is one before ``min_timestamp_ms``.
    """
    latest = _latest(record_timestamp_ms, max_skew_ms, min_timestamp_ms)
    return _prediction(obj, record_timestamp_ms, min_timestamp_ms, latest)


def ground_truth_from_dict(
    obj: object,
    record_timestamp_ms: int,
    /,
    *,
    max_skew_ms: int = DAY_MS,
    min_timestamp_ms: int = MIN_EVENT_TIME_MS,
) -> GroundTruth:
    """Validate one decoded ground-truth event; raises :class:`InvalidEvent`.

    Timestamps follow the rules of :func:`prediction_from_dict`.
    """
    latest = _latest(record_timestamp_ms, max_skew_ms, min_timestamp_ms)
    return _ground_truth(obj, record_timestamp_ms, min_timestamp_ms, latest)


def _prediction(obj: object, record_ms: int, earliest: int, latest: int) -> Prediction:
    """The validator on the hot path, its time bounds computed once per message.

    The common case (exact str/int/bool types, in range) takes only identity, length and
    two C-level character scans per id; anything else falls to helpers that find and
    name the problem.
    """
    if not isinstance(obj, dict):
        raise _not_an_object(obj)
    get = obj.get
    pid = get("prediction_id")
    if (
        type(pid) is not str
        or not 0 < len(pid) <= MAX_ID_LENGTH
        or " " in pid
        or not pid.isprintable()
    ):
        pid = _checked_id(obj, "prediction_id")
    model_id = get("model_id")
    if (
        type(model_id) is not str
        or not 0 < len(model_id) <= MAX_ID_LENGTH
        or " " in model_id
        or not model_id.isprintable()
    ):
        model_id = _checked_id(obj, "model_id")
    prediction: Any = get("prediction")
    kind = type(prediction)
    if kind is str:
        if len(prediction) > MAX_SCALAR_LENGTH:
            prediction = _checked_scalar(obj, "prediction")
    elif kind is not int and (kind is not float or not _isfinite(prediction)):
        prediction = _checked_scalar(obj, "prediction")  # also accepts bool
    ts = get("timestamp")
    if ts is None:
        ts = record_ms
    elif type(ts) is not int or not earliest <= ts <= latest:
        ts = _checked_timestamp(ts, record_ms, earliest, latest)
    version = get("model_version")
    if version is not None:
        if type(version) is not str or len(version) > MAX_TAG_LENGTH:
            version = _version(version)
        version = _intern(version)
    score: Any = get("score")
    if score is not None and (type(score) is not float or not _isfinite(score)):
        score = _optional_score(score)
    segment = get("segment")
    if segment is not None and (type(segment) is not str or len(segment) > MAX_TAG_LENGTH):
        segment = _optional_str(segment, "segment")
    features = get("features")
    cut = 0
    if features is not None:
        if not isinstance(features, dict):
            raise InvalidEvent(
                "wrong_type", f"field 'features' must be an object, got {_json_type(features)}"
            )
        features, cut = normalise_features(features)
    p = _new(Prediction)  # == Prediction(pid, model_id, ...), see _slot_setters
    _p_id(p, pid)
    _p_model(p, _intern(model_id))
    _p_version(p, version)
    _p_ts(p, ts)
    _p_pred(p, prediction)
    _p_score(p, score)
    _p_segment(p, segment)
    _p_features(p, features)
    _p_cut(p, cut)
    return p


def _ground_truth(obj: object, record_ms: int, earliest: int, latest: int) -> GroundTruth:
    if not isinstance(obj, dict):
        raise _not_an_object(obj)
    get = obj.get
    pid = get("prediction_id")
    if (
        type(pid) is not str
        or not 0 < len(pid) <= MAX_ID_LENGTH
        or " " in pid
        or not pid.isprintable()
    ):
        pid = _checked_id(obj, "prediction_id")
    label: Any = get("label")
    kind = type(label)
    if kind is str:
        if len(label) > MAX_SCALAR_LENGTH:
            label = _checked_scalar(obj, "label")
    elif kind is not int and (kind is not float or not _isfinite(label)):
        label = _checked_scalar(obj, "label")  # also accepts bool
    ts = get("timestamp")
    if ts is None:
        ts = record_ms
    elif type(ts) is not int or not earliest <= ts <= latest:
        ts = _checked_timestamp(ts, record_ms, earliest, latest)
    g = _new(GroundTruth)  # == GroundTruth(pid, label, ts), see _slot_setters
    _g_id(g, pid)
    _g_label(g, label)
    _g_ts(g, ts)
    return g


# --- message parsers ------------------------------------------------------------------------

R = TypeVar("R")


def parse_predictions(
    raw: bytes | None,
    *,
    record_timestamp_ms: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_skew_ms: int = DAY_MS,
    min_timestamp_ms: int = MIN_EVENT_TIME_MS,
) -> tuple[list[Prediction], list[Rejected]]:
    """Predictions from one Kafka message value; never raises on bad input.

    ``record_timestamp_ms`` (the Kafka record timestamp) stands in for a missing timestamp
    and bounds the others (see :func:`prediction_from_dict`).
    """
    latest = _latest(record_timestamp_ms, max_skew_ms, min_timestamp_ms)
    return _parse(raw, record_timestamp_ms, min_timestamp_ms, latest, max_bytes, _prediction)


def parse_ground_truth(
    raw: bytes | None,
    *,
    record_timestamp_ms: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_skew_ms: int = DAY_MS,
    min_timestamp_ms: int = MIN_EVENT_TIME_MS,
) -> tuple[list[GroundTruth], list[Rejected]]:
    """Labels from one Kafka message value; never raises on bad input."""
    latest = _latest(record_timestamp_ms, max_skew_ms, min_timestamp_ms)
    return _parse(raw, record_timestamp_ms, min_timestamp_ms, latest, max_bytes, _ground_truth)


def _parse(
    raw: bytes | None,
    record_ms: int,
    earliest: int,
    latest: int,
    max_bytes: int,
    build: Callable[[object, int, int, int], R],
) -> tuple[list[R], list[Rejected]]:
    if not raw:
        return [], [Rejected("empty_message", "message value is empty or null", None, b"")]
    size = len(raw)
    if size > max_bytes:
        return [], [
            Rejected(
                "oversized",
                f"message is {size} bytes, over the {max_bytes}-byte limit; "
                f"original holds only its first {min(size, OVERSIZED_KEEP_BYTES)} bytes",
                None,
                bytes(raw[:OVERSIZED_KEEP_BYTES]),
                size,
            )
        ]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], [_undecodable(bytes(raw), exc)]

    if type(doc) is list:
        records: list[R] = []
        rejected: list[Rejected] = []
        append = records.append
        for index, element in enumerate(doc):
            try:
                append(build(element, record_ms, earliest, latest))
            except InvalidEvent as exc:
                original = _element_bytes(element, raw)
                model = _model_of(element)
                rejected.append(Rejected(exc.reason, exc.detail, index, original, None, model))
        return records, rejected
    try:
        return [build(doc, record_ms, earliest, latest)], []
    except InvalidEvent as exc:
        return [], [Rejected(exc.reason, exc.detail, None, bytes(raw), None, _model_of(doc))]


def _model_of(element: object) -> str | None:
    """The element's model_id, when it is a usable id (the event is invalid otherwise)."""
    if type(element) is not dict:
        return None
    model_id = element.get("model_id")
    if type(model_id) is not str or not is_valid_id(model_id):
        return None
    return model_id


def _element_bytes(element: object, raw: bytes) -> bytes:
    """The element re-encoded, or the whole message when orjson cannot re-encode it.

    orjson decodes up to 1024 levels of nesting but encodes only 254, so a deeply nested
    element would otherwise make the parser raise.
    """
    try:
        return orjson.dumps(element)
    except orjson.JSONEncodeError:
        return bytes(raw)


def _undecodable(raw: bytes, exc: orjson.JSONDecodeError) -> Rejected:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Rejected(
            "invalid_utf8", f"message is not valid UTF-8 at byte {bad.start}", None, raw
        )
    if not raw.strip():
        return Rejected("empty_message", "message value is only whitespace", None, raw)
    return Rejected("invalid_json", f"message is not valid JSON: {exc}", None, raw)


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """A prediction joined with its label: the unit the detectors consume."""

    prediction_id: str
    model_id: str
    model_version: str | None
    event_time_ms: int
    label_time_ms: int
    prediction: Scalar
    label: Scalar
    error: float

    @property
    def completed_ms(self) -> int:
        """When the outcome became known: the later of prediction and label."""
        return max(self.event_time_ms, self.label_time_ms)


_o_setters: Final = _slot_setters(Outcome)


def new_outcome(
    prediction_id: str,
    model_id: str,
    model_version: str | None,
    event_time_ms: int,
    label_time_ms: int,
    prediction: Scalar,
    label: Scalar,
    error: float,
) -> Outcome:
    """``Outcome(...)`` at half the cost: one is made per pair (see :func:`_slot_setters`)."""
    o = _new(Outcome)
    pid_, model_, version_, te_, tl_, p_, y_, e_ = _o_setters
    pid_(o, prediction_id)
    model_(o, model_id)
    version_(o, model_version)
    te_(o, event_time_ms)
    tl_(o, label_time_ms)
    p_(o, prediction)
    y_(o, label)
    e_(o, error)
    return o
