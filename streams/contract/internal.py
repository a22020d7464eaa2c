"""Wire formats of the worker's internal topics: re-keyed events and the outcomes topic.

Both carry event-time marks next to the data, in the same partition and after it, so a
reader knows how far every upstream partition has read:

- re-key topics: ``{"from": q, "mark": M | null, "events": [...]}``: events the join
  partition ``q`` read but that belong to another partition, and, on the last message of
  a batch, the newest event time ``q`` had read of that input (``mark``);
- ``outcomes``: ``{"join": h, "offsets": {...}, "outcomes": [...], "seen": [...]}``,
  outcomes of one model joined by partition ``h`` in the batch that ended at those input
  offsets, and the predictions of that model it served (``seen``: what the label-free
  signals watch; either list may be absent), and
  ``{"join": h, "seq": s, "watermark_ms": W | null, "pred_watermark_ms": P | null,
  "offsets": {...}}``, sent by ``h`` to every outcomes partition at the end of its batch
  ``s`` (``P``: the same watermark over predictions alone).

Markers are told apart from data by their fields, never by the message key, so no id a
producer chooses can pass for one. Every message is cut to fit :data:`MAX_INTERNAL_BYTES`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from sys import intern as _intern
from typing import Any, Final, Literal, NamedTuple

import orjson

from streams.contract.events import (
    Features,
    GroundTruth,
    Outcome,
    Prediction,
    _json_type,
    ground_truth_from_dict,
    new_outcome,
    prediction_from_dict,
)
from streams.contract.features import normalise_features

__all__ = [
    "MAX_INTERNAL_BYTES",
    "Forwarded",
    "Seen",
    "JoinMark",
    "JoinedOutcomes",
    "Kind",
    "decode_forwarded",
    "decode_outcomes_message",
    "encode_forwarded",
    "encode_join_mark",
    "encode_joined_outcomes",
]

Kind = Literal["p", "g"]
"""Which input an event came from: ``p`` predictions, ``g`` ground truth."""

MAX_INTERNAL_BYTES: Final = 900_000
"""Largest internal message written: below the 1 MB a stock Kafka broker accepts."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Events join partition ``source`` read that belong to another join partition."""

    kind: Kind
    source: int
    events: Sequence[Prediction] | Sequence[GroundTruth]
    mark: int | None  # newest event time ``source`` had read of this input, when last


class Seen(NamedTuple):
    """A prediction event of a model, as its label-free signals need it: a served
    prediction (``valid``), or one that was dead-lettered (its ``key`` then names the
    record, ``!partition:offset:index``, since its prediction_id may be unusable). A named
    tuple: one is made per prediction, and a frozen dataclass costs five times more."""

    key: str
    model_id: str
    event_time_ms: int
    prediction: Any = None
    score: float | None = None
    model_version: str | None = None
    valid: bool = True
    features: Features | None = None  # normalised (streams.contract.features), when sent


@dataclass(frozen=True, slots=True)
class JoinedOutcomes:
    """Outcomes of one model, joined by join partition ``join`` in the batch that ended at
    input ``offsets`` (what the detect step needs to drop them when a crash re-emits them,
    even when the batch's :class:`JoinMark` never made it out), and the prediction events
    of that model the batch saw (``seen``)."""

    join: int
    outcomes: Sequence[Outcome]
    offsets: dict[str, int] = field(default_factory=dict)
    seen: Sequence[Seen] = ()

    @property
    def model_id(self) -> str:
        """The model of these outcomes and predictions (never both empty)."""
        return (self.outcomes[0] if self.outcomes else self.seen[0]).model_id


@dataclass(frozen=True, slots=True)
class JoinMark:
    """End of batch ``seq`` of join partition ``join``, and how far it has read."""

    join: int
    seq: int
    watermark_ms: int | None
    offsets: dict[str, int]  # last offset processed of each input topic of the join
    pred_watermark_ms: int | None = None  # the watermark over predictions only


# --- encoding -------------------------------------------------------------------------------


def _prediction(p: Prediction) -> dict[str, Any]:
    event: dict[str, Any] = {
        "prediction_id": p.prediction_id,
        "model_id": p.model_id,
        "model_version": p.model_version,
        "timestamp": p.timestamp_ms,
        "prediction": p.prediction,
        "score": p.score,
        "segment": p.segment,
    }
    if p.features is not None:  # already bounded: read back unchanged
        event["features"] = p.features
    return event


def _label(g: GroundTruth) -> dict[str, Any]:
    return {"prediction_id": g.prediction_id, "label": g.label, "timestamp": g.timestamp_ms}


def _outcome(o: Outcome) -> dict[str, Any]:
    if not math.isfinite(o.error):
        raise ValueError(f"outcome {o.prediction_id!r} has non-finite error {o.error!r}")
    return {
        "id": o.prediction_id,
        "m": o.model_id,
        "v": o.model_version,
        "te": o.event_time_ms,
        "tl": o.label_time_ms,
        "p": o.prediction,
        "y": o.label,
        "e": o.error,
    }


def _chunked(
    head: dict[str, Any], name: str, items: list[Any], last: dict[str, Any]
) -> Iterator[bytes]:
    """``head`` with ``items`` under ``name``, split until each message fits; ``last`` is
    merged into the final message only (a mark must follow every event it covers)."""
    body = orjson.dumps({**head, name: items, **last})
    if len(body) <= MAX_INTERNAL_BYTES or len(items) <= 1:
        if len(body) > MAX_INTERNAL_BYTES:
            raise ValueError(f"one internal item is {len(body)} bytes, over the limit")
        yield body
        return
    half = len(items) // 2
    yield from _chunked(head, name, items[:half], {})
    yield from _chunked(head, name, items[half:], last)


def encode_forwarded(f: Forwarded) -> list[bytes]:
    """The re-key messages for ``f`` (usually one)."""
    to_dict = _prediction if f.kind == "p" else _label
    items = [to_dict(e) for e in f.events]  # type: ignore[arg-type]
    return list(_chunked({"from": f.source}, "events", items, {"mark": f.mark}))


def _seen(s: Seen) -> list[Any]:
    """``[key, te, prediction, score, version]``, then the features when the event had
    some, or ``[key, te]`` for a dead letter: an array, not an object, as there is one per
    prediction (the model is the message's)."""
    if not s.valid:
        return [s.key, s.event_time_ms]
    score = s.score
    if score is not None and not math.isfinite(score):
        score = None
    if s.features is not None:
        return [s.key, s.event_time_ms, s.prediction, score, s.model_version, s.features]
    return [s.key, s.event_time_ms, s.prediction, score, s.model_version]


def encode_joined_outcomes(j: JoinedOutcomes) -> list[bytes]:
    """The ``outcomes`` messages for ``j`` (usually one: both lists in it)."""
    head: dict[str, Any] = {"join": j.join, "offsets": j.offsets}
    outcomes = [_outcome(o) for o in j.outcomes]
    seen = [_seen(s) for s in j.seen]
    if seen:
        head["m"] = j.model_id
    if outcomes and seen:
        body = orjson.dumps({**head, "outcomes": outcomes, "seen": seen})
        if len(body) <= MAX_INTERNAL_BYTES:
            return [body]
    out = list(_chunked(head, "outcomes", outcomes, {})) if outcomes or not seen else []
    if seen:
        out += _chunked(head, "seen", seen, {})
    return out


def encode_join_mark(m: JoinMark) -> bytes:
    return orjson.dumps(
        {
            "join": m.join,
            "seq": m.seq,
            "watermark_ms": m.watermark_ms,
            "pred_watermark_ms": m.pred_watermark_ms,
            "offsets": m.offsets,
        }
    )


# --- decoding -------------------------------------------------------------------------------


def _object(raw: bytes | None, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} message is not valid JSON: {exc}") from None
    if type(doc) is not dict:
        raise ValueError(f"{what} message must be a JSON object, got {type(doc).__name__}")
    return doc


def _int(doc: dict[str, Any], key: str, what: str, *, nullable: bool = False) -> Any:
    value = doc.get(key)
    if value is None and nullable and key in doc:
        return None
    if type(value) is not int:
        raise ValueError(f"{what} message: {key!r} must be an integer, got {value!r:.80}")
    return value


def decode_forwarded(kind: Kind, raw: bytes | None) -> Forwarded:
    """A re-key message; ValueError says what is wrong (the events were validated when
    first read, so a failure here means something else wrote to the topic)."""
    doc = _object(raw, "re-key")
    source = _int(doc, "from", "re-key")
    mark = _int(doc, "mark", "re-key", nullable=True)
    items = doc.get("events")
    if type(items) is not list:
        raise ValueError("re-key message: 'events' must be an array")
    build = prediction_from_dict if kind == "p" else ground_truth_from_dict
    # no time window: the events passed the input rules when first read, and a window
    # (the contract's default earliest time, say) would refuse what the settings allowed
    events = [build(item, 0, min_timestamp_ms=0) for item in items]
    return Forwarded(kind, source, events, mark)  # type: ignore[arg-type]


_SCALAR_TYPES: Final = frozenset((str, int, float, bool))

# Wire keys of an outcome (short: there are many):
#   id  prediction_id     m   model_id     v  model_version (null when unknown)
#   te  event_time_ms     tl  label_time_ms
#   p   prediction        y   label        e  error


def _decode_outcome(obj: object, index: int) -> Outcome:
    if type(obj) is not dict:
        raise ValueError(f"outcome {index} must be a JSON object, got {_json_type(obj)}")
    try:
        pid = obj["id"]
        model_id = obj["m"]
        te = obj["te"]
        tl = obj["tl"]
        prediction = obj["p"]
        label = obj["y"]
        error = obj["e"]
    except KeyError as exc:
        raise ValueError(f"outcome {index}: key {exc.args[0]!r} is missing") from None
    version = obj.get("v")
    problem = None
    if type(pid) is not str:
        problem = "id", "a string"
    elif type(model_id) is not str:
        problem = "m", "a string"
    elif version is not None and type(version) is not str:
        problem = "v", "a string or null"
    elif type(te) is not int:
        problem = "te", "an integer"
    elif type(tl) is not int:
        problem = "tl", "an integer"
    elif type(prediction) not in _SCALAR_TYPES:
        problem = "p", "a string, number or boolean"
    elif type(label) not in _SCALAR_TYPES:
        problem = "y", "a string, number or boolean"
    elif type(error) is not float and type(error) is not int:
        problem = "e", "a number"
    if problem is not None:
        key, expected = problem
        raise ValueError(
            f"outcome {index}: key {key!r} must be {expected}, got {_json_type(obj[key])}"
        )
    return new_outcome(pid, _intern(model_id), version, te, tl, prediction, label, float(error))


def decode_outcomes_message(raw: bytes | None) -> JoinedOutcomes | JoinMark:
    """One ``outcomes`` message; ValueError says what is wrong."""
    doc = _object(raw, "outcomes")
    join = _int(doc, "join", "outcomes")
    offsets = doc.get("offsets")
    if type(offsets) is not dict or any(type(v) is not int for v in offsets.values()):
        raise ValueError("outcomes message: 'offsets' must map topics to integers")
    if "seq" in doc:
        seq = _int(doc, "seq", "outcomes")
        watermark = _int(doc, "watermark_ms", "outcomes", nullable=True)
        pred = (
            _int(doc, "pred_watermark_ms", "outcomes", nullable=True)
            if "pred_watermark_ms" in doc
            else None
        )
        return JoinMark(join, seq, watermark, offsets, pred)
    items = doc.get("outcomes", [] if "seen" in doc else None)
    if type(items) is not list:
        raise ValueError("outcomes message: 'outcomes' must be an array")
    seen = doc.get("seen", [])
    if type(seen) is not list:
        raise ValueError("outcomes message: 'seen' must be an array")
    decoded: tuple[Seen, ...] = ()
    if seen:
        model_id = doc.get("m")
        if type(model_id) is not str:
            raise ValueError("outcomes message: 'm' must be a string where 'seen' is")
        model_id = _intern(model_id)
        decoded = tuple(_decode_seen(s, i, model_id) for i, s in enumerate(seen))
    return JoinedOutcomes(
        join, [_decode_outcome(o, i) for i, o in enumerate(items)], offsets, decoded
    )


def _decode_seen(obj: object, index: int, model_id: str) -> Seen:
    if type(obj) is not list or len(obj) not in (2, 5, 6):
        raise ValueError(f"seen {index} must be an array of 2, 5 or 6 items, got {_json_type(obj)}")
    key, te = obj[0], obj[1]
    if type(key) is not str or type(te) is not int:
        raise ValueError(f"seen {index}: the key must be a string and the time an integer")
    if len(obj) == 2:
        return Seen(key, model_id, te, valid=False)
    prediction, score, version = obj[2:5]
    features = None
    if len(obj) == 6:  # written by a version that keeps features
        if type(obj[5]) is not dict:
            raise ValueError(f"seen {index}: the features must be an object")
        features = normalise_features(obj[5])[0]
    if type(prediction) not in _SCALAR_TYPES:
        raise ValueError(f"seen {index}: the prediction must be a string, number or boolean")
    if score is not None and type(score) is not float and type(score) is not int:
        raise ValueError(f"seen {index}: the score must be a number or null")
    if version is not None and type(version) is not str:
        raise ValueError(f"seen {index}: the version must be a string or null")
    score = None if score is None else float(score)
    return Seen(key, model_id, te, prediction, score, version, True, features)
