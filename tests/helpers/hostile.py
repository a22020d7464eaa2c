"""Seeded streams for the third-party tests: the messages to produce, and what the system
must make of them, computed from the generator's own knowledge (never from the system).

Three shapes share one traffic model (:func:`valid_traffic`):

- :func:`hostile_stream`: valid classification and regression traffic for 12 models,
  three of which degrade halfway (5% -> 40% wrong, or a regression error four times
  larger), mixed with poison. Valid events arrive keyed by prediction_id through
  librdkafka's default partitioner (CRC32), unkeyed, through aiokafka's default producer
  (murmur2), or as elements of JSON arrays that also hold bad elements; labels come
  early (before their prediction), late, twice, or never; a few events have no
  timestamp, an RFC 3339 offset other than Z, or epoch milliseconds; ids include
  non-ASCII characters and the names of internal state keys (without the NUL that
  internal keys start with, so they are valid ids). One regression model gets absurd
  labels (off by 1e6 and 1e300) and no real change: those pairs are valid, must join,
  and must not page anybody.
- :func:`clean_stream`: the same traffic without poison, all through the default
  partitioner, for the replay-equivalence test.
- :func:`batched_stream`: large streams as JSON arrays, each on the murmur2 home
  partition of its elements, in chunks, for the crash test.

Event times of valid traffic follow the stream: each partition receives its events in
event-time order, at most a few seconds out of order (far below the worker's 5-minute
reorder lag), and every record's Kafka timestamp is set explicitly to (about) the event
time, so the timestamp bounds (at most one day ahead of the record, not before 2000) are
deterministic. Poison carries no valid event time, so it does not move watermarks.

The expected dead-letter reason of every kind of poison is in :data:`POISON` (one table,
used by the generator and readable by a reviewer). The reasons ``invalid_id`` and
``timestamp_out_of_range`` are being added by the contract work (ids follow one grammar,
event times are bounded by the record timestamp); ``unscorable`` is a joined pair whose
error cannot be computed, here a non-finite number sent as a string to a model configured
as regression (JSON has no non-finite numbers: written as numbers, ``NaN``, ``Infinity``
and ``1e999`` make the message ``invalid_json``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from aiokafka.partitioner import murmur2

from helpers.third_party import Message, Segment

__all__ = [
    "POISON",
    "Expected",
    "ModelSpec",
    "Stream",
    "Topics",
    "batched_stream",
    "clean_stream",
    "detector_config_toml",
    "hostile_stream",
    "murmur2_partition",
    "valid_traffic",
]

Kind = Literal["p", "g"]
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_EVENT_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
BIG_TIMESTAMP_BYTES = 900 * 1024
OVERSIZED_BYTES = 1_100_000  # over the worker's 1 MiB (1,048,576) message limit
LONG_LABEL = 2000  # over the contract's 1,024 characters for a class label


# --- the expected-reason table ---------------------------------------------------------------


@dataclass(frozen=True)
class Poison:
    """One kind of bad input: its topic, how many standalone messages and array elements
    of it the hostile stream holds, and the dead-letter reason it must get."""

    reason: str
    kind: Kind
    build: Callable[[random.Random, str, int], Any]
    """``build(rng, prediction_id, record_timestamp_ms)``: the bad event (a dict or other
    JSON value) or the raw message bytes (``bytes``, or None for a null value)."""
    messages: int = 0
    elements: int = 0  # as one element of a JSON array with valid neighbours
    big: bool = False  # over 512 KB: only through the confluent producer


def _ts(ms: int) -> str:
    text = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat(
        timespec="milliseconds"
    )
    return text.replace("+00:00", "Z")


def _pred(pid: str, ts: Any, **extra: Any) -> dict[str, Any]:
    return {"prediction_id": pid, "model_id": "clf-00", "prediction": 1, "timestamp": ts, **extra}


def _label(pid: str, ts: Any, **extra: Any) -> dict[str, Any]:
    return {"prediction_id": pid, "label": 1, "timestamp": ts, **extra}


def _without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != name}


POISON: dict[str, Poison] = {
    # --- invalid_timestamp
    "timestamp_900kb": Poison(
        "invalid_timestamp",
        "p",
        # 45,000 RFC 3339 timestamps in a row: about 900 KB, never a timestamp
        lambda r, pid, rec: _pred(pid, "2026-11-01T00:00:00Z" * (BIG_TIMESTAMP_BYTES // 20)),
        messages=4,
        big=True,
    ),
    "timestamp_no_offset": Poison(
        "invalid_timestamp", "p", lambda r, pid, rec: _pred(pid, "2026-11-01T10:00:00"), 3, 2
    ),
    "timestamp_words": Poison(
        "invalid_timestamp", "g", lambda r, pid, rec: _label(pid, "yesterday"), 3, 2
    ),
    "timestamp_float": Poison(
        "invalid_timestamp", "p", lambda r, pid, rec: _pred(pid, float(rec)), 2, 1
    ),
    "timestamp_bool": Poison("invalid_timestamp", "g", lambda r, pid, rec: _label(pid, True), 2),
    "timestamp_impossible_date": Poison(
        "invalid_timestamp", "p", lambda r, pid, rec: _pred(pid, "2026-13-45T99:00:00Z"), 2
    ),
    # --- oversized
    "oversized": Poison(
        "oversized",
        "p",
        lambda r, pid, rec: orjson.dumps(_pred(pid, rec, features={"blob": "x" * OVERSIZED_BYTES})),
        messages=3,
        big=True,
    ),
    # --- invalid_json (orjson, like every strict parser, has no NaN or Infinity)
    "json_truncated": Poison(
        "invalid_json", "p", lambda r, pid, rec: orjson.dumps(_pred(pid, rec))[:-7], 4
    ),
    "json_truncated_label": Poison(
        "invalid_json", "g", lambda r, pid, rec: orjson.dumps(_label(pid, rec))[:-3], 3
    ),
    "json_nan_number": Poison(
        "invalid_json",
        "p",
        lambda r, pid, rec: (
            b'{"prediction_id": "%s", "model_id": "reg-00", "prediction": NaN}' % pid.encode()
        ),
        3,
    ),
    "json_infinity_number": Poison(
        "invalid_json",
        "g",
        lambda r, pid, rec: b'{"prediction_id": "%s", "label": -Infinity}' % pid.encode(),
        3,
    ),
    "json_1e999_number": Poison(
        "invalid_json",
        "g",
        lambda r, pid, rec: b'{"prediction_id": "%s", "label": 1e999}' % pid.encode(),
        3,
    ),
    "json_trailing_garbage": Poison(
        "invalid_json", "p", lambda r, pid, rec: orjson.dumps(_pred(pid, rec)) + b"}{", 2
    ),
    # --- invalid_utf8
    "utf8_in_string": Poison(
        "invalid_utf8",
        "p",
        lambda r, pid, rec: (
            b'{"prediction_id": "%s\xff\xfe", "model_id": "clf-00", "prediction": 1}' % pid.encode()
        ),
        3,
    ),
    "utf8_raw_bytes": Poison("invalid_utf8", "g", lambda r, pid, rec: b"\xc3\x28\xa0\xa1", 2),
    # --- invalid_id (new: one id grammar; internal keys start with NUL)
    "id_internal_offsets_0": Poison(
        "invalid_id", "p", lambda r, pid, rec: _pred("\u0000offsets:0", rec), 2, 1
    ),
    "id_internal_offsets_3": Poison(
        "invalid_id", "g", lambda r, pid, rec: _label("\u0000offsets:3", rec), 2, 1
    ),
    "id_internal_watermark": Poison(
        "invalid_id", "p", lambda r, pid, rec: _pred("\u0000watermark", rec), 2, 1
    ),
    "id_internal_watermark_label": Poison(
        "invalid_id", "g", lambda r, pid, rec: _label("\u0000watermark", rec), 2
    ),
    "id_internal_seq": Poison("invalid_id", "p", lambda r, pid, rec: _pred("\u0000seq", rec), 1),
    "id_space": Poison("invalid_id", "p", lambda r, pid, rec: _pred(pid + " 1", rec), 2, 1),
    "id_tab": Poison("invalid_id", "g", lambda r, pid, rec: _label(pid + "\t2", rec), 2, 1),
    "id_newline": Poison("invalid_id", "p", lambda r, pid, rec: _pred(pid + "\n", rec), 2),
    "id_nbsp": Poison("invalid_id", "p", lambda r, pid, rec: _pred("\u00a0" + pid, rec), 1),
    "id_zero_width": Poison(
        "invalid_id", "g", lambda r, pid, rec: _label(pid + "\u200b", rec), 1, 1
    ),
    "id_bell": Poison("invalid_id", "p", lambda r, pid, rec: _pred(pid + "\u0007", rec), 1),
    "id_empty": Poison("invalid_id", "p", lambda r, pid, rec: _pred("", rec), 1),
    "id_too_long": Poison("invalid_id", "g", lambda r, pid, rec: _label("x" * 300, rec), 1),
    "model_id_space": Poison(
        "invalid_id", "p", lambda r, pid, rec: _pred(pid, rec, model_id="clf 00"), 2, 1
    ),
    # --- timestamp_out_of_range (new: event times bounded by the record timestamp)
    "timestamp_year_9999": Poison(
        "timestamp_out_of_range",
        "p",
        lambda r, pid, rec: _pred(pid, "9999-12-31T00:00:00Z"),
        3,
        1,
    ),
    "timestamp_year_9999_label": Poison(
        "timestamp_out_of_range", "g", lambda r, pid, rec: _label(pid, "9999-12-31T00:00:00Z"), 2
    ),
    "timestamp_day_ahead": Poison(
        "timestamp_out_of_range",
        "p",
        lambda r, pid, rec: _pred(pid, _ts(rec + DAY_MS + HOUR_MS)),
        2,
        1,
    ),
    "timestamp_day_ahead_ms": Poison(
        "timestamp_out_of_range", "g", lambda r, pid, rec: _label(pid, rec + DAY_MS + HOUR_MS), 2
    ),
    "timestamp_before_2000": Poison(
        "timestamp_out_of_range",
        "p",
        lambda r, pid, rec: _pred(pid, "1999-12-31T23:59:59Z"),
        2,
        1,
    ),
    "timestamp_epoch_seconds": Poison(
        "timestamp_out_of_range", "g", lambda r, pid, rec: _label(pid, rec // 1000), 2, 1
    ),
    "timestamp_zero": Poison("timestamp_out_of_range", "p", lambda r, pid, rec: _pred(pid, 0), 1),
    # --- invalid_value
    "label_too_long": Poison(
        "invalid_value", "g", lambda r, pid, rec: _label(pid, rec, label="c" * LONG_LABEL), 3, 2
    ),
    "prediction_too_long": Poison(
        "invalid_value",
        "p",
        lambda r, pid, rec: _pred(pid, rec, prediction="c" * 5 * LONG_LABEL),
        2,
        1,
    ),
    "model_version_too_long": Poison(
        "invalid_value", "p", lambda r, pid, rec: _pred(pid, rec, model_version="v" * 300), 1
    ),
    # --- missing_field
    "missing_model_id": Poison(
        "missing_field", "p", lambda r, pid, rec: _without(_pred(pid, rec), "model_id"), 3, 2
    ),
    "missing_prediction": Poison(
        "missing_field", "p", lambda r, pid, rec: _without(_pred(pid, rec), "prediction"), 2
    ),
    "null_prediction": Poison(
        "missing_field", "p", lambda r, pid, rec: _pred(pid, rec, prediction=None), 1
    ),
    "missing_prediction_id": Poison(
        "missing_field", "g", lambda r, pid, rec: _without(_label(pid, rec), "prediction_id"), 2
    ),
    "missing_label": Poison(
        "missing_field", "g", lambda r, pid, rec: _without(_label(pid, rec), "label"), 2, 2
    ),
    "label_in_predictions": Poison(
        "missing_field", "p", lambda r, pid, rec: _label(pid, rec), 1, 1
    ),
    # --- wrong_type
    "prediction_object": Poison(
        "wrong_type", "p", lambda r, pid, rec: _pred(pid, rec, prediction={"x": 1}), 2, 1
    ),
    "prediction_id_number": Poison(
        "wrong_type", "g", lambda r, pid, rec: _label(pid, rec, prediction_id=12345), 1
    ),
    "features_list": Poison(
        "wrong_type", "p", lambda r, pid, rec: _pred(pid, rec, features=[1, 2]), 1
    ),
    # --- not_an_object
    "json_string": Poison("not_an_object", "p", lambda r, pid, rec: b'"just a string"', 1),
    "json_number": Poison("not_an_object", "g", lambda r, pid, rec: 42, 1, 2),
    "json_null": Poison("not_an_object", "p", lambda r, pid, rec: b"null", 1),
    # --- empty_message
    "null_value": Poison("empty_message", "p", lambda r, pid, rec: None, 1),
    "empty_value": Poison("empty_message", "g", lambda r, pid, rec: b"", 1),
    "whitespace_value": Poison("empty_message", "p", lambda r, pid, rec: b"  \n\t ", 1),
}
"""Every kind of standalone poison message and bad array element, with its reason."""

UNSCORABLE_REASON = "unscorable"
"""Reason of a valid prediction and a valid label whose error cannot be computed (a
non-finite number as a string, for a model configured as regression)."""
NON_FINITE_STRINGS = ("NaN", "Infinity", "-Infinity", "nan", "inf", "1e999")

BAD_DUPLICATE_LABEL = "timestamp_out_of_range"
"""A second label of a valid pair, timed in year 9999: dead-lettered, the pair still joins
once with the valid label."""


# --- models and expectations -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    task: Literal["classification", "regression"]
    classes: tuple[Any, ...] = ()
    degraded: bool = False
    absurd: bool = False  # regression labels off by 1e6 and 1e300, no real change


@dataclass
class Expected:
    """What the system must produce, from the generator's own bookkeeping."""

    pairs: dict[str, int]  # model -> valid pairs that must join exactly once
    pair_ids: dict[str, set[str]]  # model -> their prediction ids
    dlq: Counter[str]  # reason -> bad messages or elements
    change_at_ms: dict[str, int]  # degraded model -> event time of its change
    quiet: set[str]  # models that must not raise any degradation alert
    predictions: int = 0
    labels: int = 0


@dataclass(frozen=True)
class Topics:
    predictions: str
    ground_truth: str

    def of(self, kind: Kind) -> str:
        return self.predictions if kind == "p" else self.ground_truth


@dataclass
class Stream:
    segments: list[Segment]
    expected: Expected
    models: list[ModelSpec]
    span_ms: tuple[int, int] = (0, 0)  # first and last record timestamp

    @property
    def messages(self) -> int:
        return sum(len(s.messages) for s in self.segments)


def detector_config_toml(models: list[ModelSpec]) -> str:
    """Each model's task, so that a string label of a regression model is unscorable
    whatever the task inference does."""
    return "".join(f'[models.{m.model_id}]\ntask = "{m.task}"\n\n' for m in models)


def murmur2_partition(key: str, partitions: int) -> int:
    """Kafka's default (Java, aiokafka) partition of a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# --- valid traffic ----------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """One event on the timeline: emitted at ``pos_ms`` (its record timestamp)."""

    pos_ms: int
    seq: int
    kind: Kind
    pid: str
    event: dict[str, Any]
    model_id: str = ""


@dataclass
class Traffic:
    items: list[Item]
    pairs: dict[str, set[str]]
    change_at_ms: dict[str, int]
    predictions: int
    labels: int
    valid_labels: dict[str, Item] = field(default_factory=dict)  # one per labelled pid


_OFFSETS = (timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))
_INTERNAL_LOOKING = ("offsets:0", "watermark", "seq", "mark:p", "via:g:1", "wm:0", "offsets")
_UNICODE = ("ü", "字", "🙂", "é")


Formats = Literal["mixed", "rfc3339", "epoch_ms"]


def _timestamp(rng: random.Random, ms: int, *, formats: Formats) -> Any:
    """The event time in one of the contract's forms (or missing: the record's);
    ``mixed``: RFC 3339 with Z, epoch ms, RFC 3339 with another offset, or none."""
    if formats == "rfc3339":
        return _ts(ms)
    if formats == "epoch_ms":
        return ms
    roll = rng.random()
    if roll < 0.55:
        return _ts(ms)
    if roll < 0.88:
        return ms
    if roll < 0.99:
        dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        return dt.astimezone(rng.choice(_OFFSETS)).isoformat(timespec="milliseconds")
    return None  # no timestamp: the record timestamp (== ms) stands in


def default_models(n_classification: int = 7, n_regression: int = 5) -> list[ModelSpec]:
    """12 models by default: classification ones with int, str and bool classes, regression
    ones, two degraded classifiers, one degraded regression, one absurd regression."""
    classes: list[tuple[Any, ...]] = [
        (0, 1),
        (0, 1),
        (0, 1, 2),
        ("cat", "dog", "bird"),
        ("fraud", "ok"),
        (True, False),
        (0, 1),
    ]
    models = [
        ModelSpec(f"clf-{i:02d}", "classification", classes[i % len(classes)], i in (1, 4))
        for i in range(n_classification)
    ]
    models += [
        ModelSpec(f"reg-{i:02d}", "regression", (), degraded=(i == 2))
        for i in range(n_regression - 1)
    ]
    models.append(ModelSpec("reg-absurd", "regression", (), absurd=True))
    return models


def valid_traffic(
    rng: random.Random,
    models: list[ModelSpec],
    *,
    per_model: int,
    base_ms: int,
    span_ms: int,
    labelled: float = 0.92,
    early: float = 0.08,
    duplicates: float = 0.03,
    jitter: float = 0.03,
    formats: Formats = "mixed",
    odd_ids: bool = True,
    absurd_labels: int = 4,
    pid_prefix: str = "",
) -> Traffic:
    """Predictions and labels of ``models`` over ``span_ms`` of event time from
    ``base_ms``; a degraded model's error jumps at its median prediction time.

    Labels come ``early`` (up to 90 s before their prediction), otherwise after a delay
    of 4 min on average (at most 1 h); ``duplicates`` of them again 0.2-3 s later with the
    same content; ``jitter`` of the events are emitted up to 2 s after their event time."""
    items: list[Item] = []
    pairs: dict[str, set[str]] = {m.model_id: set() for m in models}
    change_at: dict[str, int] = {}
    valid_labels: dict[str, Item] = {}
    seq = 0
    n_pred = n_label = 0
    odd = iter(_INTERNAL_LOOKING)
    for mi, m in enumerate(models):
        times = sorted(base_ms + rng.randrange(int(span_ms * 0.97)) for _ in range(per_model))
        change = times[per_model // 2]
        if m.degraded:
            change_at[m.model_id] = change
        absurd: dict[int, float] = {}
        if m.absurd:  # half of them off by 1e6, half by 1e300
            at = rng.sample(range(per_model // 10, per_model), absurd_labels * 2)
            absurd = {i: 1e6 if k < absurd_labels else 1e300 for k, i in enumerate(at)}
        for i, t in enumerate(times):
            pid = f"{pid_prefix}{m.model_id}-{i:05d}-{rng.getrandbits(24):06x}"
            if odd_ids and mi == 0 and i % 500 == 7:
                pid = next(odd, pid)  # valid ids that read like internal key names
            elif odd_ids and rng.random() < 0.02:
                pid = f"{pid}-{rng.choice(_UNICODE)}"
            after = m.degraded and t >= change
            if m.task == "classification":
                prediction = rng.choice(m.classes)
                wrong = rng.random() < (0.40 if after else 0.05)
                others = [c for c in m.classes if c != prediction]
                label = rng.choice(others) if wrong else prediction
            else:
                prediction = round(rng.uniform(10.0, 500.0), 3)
                label = round(prediction + rng.gauss(0.0, 4.0 if after else 1.0), 3)
                if i in absurd:
                    label = prediction + absurd[i]
            event: dict[str, Any] = {
                "prediction_id": pid,
                "model_id": m.model_id,
                "model_version": "2.1.0" if rng.random() < 0.9 else "2.2.0",
                "timestamp": _timestamp(rng, t, formats=formats),
                "prediction": prediction,
            }
            if rng.random() < 0.5:
                event["score"] = round(rng.random(), 4)
            if rng.random() < 0.3:
                event["segment"] = rng.choice(("eu", "us", "apac"))
            if rng.random() < 0.2:
                event["features"] = {"amount": round(rng.uniform(1, 900), 2), "n": i % 100}
            if event["timestamp"] is None:
                del event["timestamp"]
            pos = t + (rng.randrange(2000) if rng.random() < jitter else 0)
            if "timestamp" not in event:
                pos = t  # the record timestamp is the event time
            items.append(Item(pos, seq, "p", pid, event, m.model_id))
            seq += 1
            n_pred += 1
            if i not in absurd and rng.random() >= labelled:
                continue
            if rng.random() < early:
                lt = t - 1000 - rng.randrange(89_000)
            else:
                lt = t + min(int(rng.expovariate(1 / 240_000)), HOUR_MS)
            label_event: dict[str, Any] = {
                "prediction_id": pid,
                "label": label,
                "timestamp": _timestamp(rng, lt, formats=formats),
            }
            if label_event["timestamp"] is None:
                del label_event["timestamp"]
            lpos = lt + (rng.randrange(2000) if rng.random() < jitter else 0)
            if "timestamp" not in label_event:
                lpos = lt
            item = Item(lpos, seq, "g", pid, label_event, m.model_id)
            items.append(item)
            valid_labels[pid] = item
            seq += 1
            n_label += 1
            pairs[m.model_id].add(pid)
            if rng.random() < duplicates:
                again = {**label_event, "timestamp": label_event.get("timestamp", lt)}
                items.append(Item(lpos + 200 + rng.randrange(2800), seq, "g", pid, again))
                seq += 1
                n_label += 1
    items.sort(key=lambda it: (it.pos_ms, it.seq))
    return Traffic(items, pairs, change_at, n_pred, n_label, valid_labels)


def _expected(traffic: Traffic, models: list[ModelSpec]) -> Expected:
    return Expected(
        pairs={m: len(ids) for m, ids in traffic.pairs.items()},
        pair_ids=traffic.pairs,
        dlq=Counter(),
        change_at_ms=dict(traffic.change_at_ms),
        quiet={m.model_id for m in models if m.absurd},
        predictions=traffic.predictions,
        labels=traffic.labels,
    )


# --- the hostile stream -----------------------------------------------------------------------


@dataclass(slots=True)
class _Bad:
    pos_ms: int
    seq: int
    kind: Kind
    name: str  # key of POISON, or "" for a raw value built already
    pid: str
    raw: bytes | None = None
    prebuilt: bool = False
    reason: str = ""  # of a prebuilt value (the others': POISON[name].reason)


def _encode(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return orjson.dumps(value)


def hostile_stream(
    seed: int,
    topics: Topics,
    *,
    base_ms: int,
    per_model: int = 4800,
    span_ms: int = 4 * HOUR_MS,
    models: list[ModelSpec] | None = None,
    aiokafka_blocks: float = 0.12,
    unkeyed: float = 0.08,
    in_arrays: float = 0.12,
) -> Stream:
    """The hostile mix described in the module docstring (about 100k messages with the
    defaults, about 53k valid pairs)."""
    rng = random.Random(seed)
    models = models or default_models()
    traffic = valid_traffic(rng, models, per_model=per_model, base_ms=base_ms, span_ms=span_ms)
    expected = _expected(traffic, models)
    end_ms = base_ms + span_ms

    bad: list[_Bad] = []
    seq = 10**9
    counter = iter(range(10**9))

    def bad_pid() -> str:
        return f"bad-{next(counter):05d}"

    for name, poison in POISON.items():
        for _ in range(poison.messages):
            pid = bad_pid()
            bad.append(_Bad(base_ms + rng.randrange(span_ms), seq, poison.kind, name, pid))
            seq += 1
            expected.dlq[poison.reason] += 1

    # pairs whose error cannot be computed: a non-finite number as a string, on a model
    # configured as regression (second half of the stream: the task is long established)
    regression = [m for m in models if m.task == "regression" and not m.degraded and not m.absurd]
    for j, text in enumerate(NON_FINITE_STRINGS * 2):
        m = regression[j % len(regression)]
        pid = f"nf-{j:03d}"
        t = base_ms + span_ms // 2 + rng.randrange(span_ms // 3)
        string_prediction = j >= len(NON_FINITE_STRINGS) and j % 2 == 0
        prediction: Any = text if string_prediction else 120.5
        label: Any = 121.0 if string_prediction else text
        event = {"prediction_id": pid, "model_id": m.model_id, "timestamp": t}
        traffic.items.append(Item(t, seq, "p", pid, {**event, "prediction": prediction}))
        lt = t + 30_000
        traffic.items.append(
            Item(lt, seq + 1, "g", pid, {"prediction_id": pid, "label": label, "timestamp": lt})
        )
        seq += 2
        expected.dlq[UNSCORABLE_REASON] += 1
        expected.predictions += 1
        expected.labels += 1

    # a bad second label for valid pairs; labels for predictions that were dead-lettered
    labelled = list(traffic.valid_labels.values())
    for item in rng.sample(labelled, 6):
        raw = orjson.dumps(
            {**item.event, "timestamp": "9999-12-31T00:00:00Z"}
        )  # same id, same label, impossible time
        bad.append(
            _Bad(item.pos_ms + 100, seq, "g", "", item.pid, raw, True, reason=BAD_DUPLICATE_LABEL)
        )
        seq += 1
        expected.dlq[BAD_DUPLICATE_LABEL] += 1
    rejected_pids = [b.pid for b in bad if b.name in ("timestamp_900kb", "missing_model_id")]
    for pid in rejected_pids:
        t = base_ms + rng.randrange(span_ms)
        traffic.items.append(
            Item(t, seq, "g", pid, {"prediction_id": pid, "label": 1, "timestamp": t})
        )
        seq += 1
        expected.labels += 1  # valid, but its prediction never was: no pair, no dead letter

    element_pool = [name for name, p in POISON.items() for _ in range(p.elements)]
    rng.shuffle(element_pool)

    timeline: list[Item | _Bad] = [*traffic.items, *bad]
    timeline.sort(key=lambda x: (x.pos_ms, x.seq))

    segments: list[Segment] = []
    deferred_big: list[Message] = []
    arrays: dict[Kind, list[Item]] = {"p": [], "g": []}
    target = {"p": rng.randint(3, 12), "g": rng.randint(3, 12)}
    current: list[Message] = []
    client = "confluent"
    left_in_block = 0

    def flush_array(kind: Kind) -> None:
        elements = arrays[kind]
        if not elements:
            return
        record_ms = max(e.pos_ms for e in elements)
        values: list[Any] = [e.event for e in elements]
        while element_pool and rng.random() < 0.5:
            name = next((n for n in element_pool if POISON[n].kind == kind), None)
            if name is None:
                break
            element_pool.remove(name)
            poison = POISON[name]
            value = poison.build(rng, bad_pid(), record_ms)
            values.insert(rng.randrange(len(values) + 1), value)
            expected.dlq[poison.reason] += 1
        key = elements[0].pid.encode() if rng.random() < 0.5 else None
        current.append(Message(topics.of(kind), key, orjson.dumps(values), record_ms))
        arrays[kind] = []
        target[kind] = rng.randint(3, 12)

    def close_segment() -> None:
        nonlocal current
        for kind in ("p", "g"):
            flush_array(kind)  # type: ignore[arg-type]
        if current:
            segments.append(Segment(client, current))
        current = []

    for x in timeline:
        if left_in_block == 0:
            close_segment()
            client = "aiokafka" if rng.random() < aiokafka_blocks else "confluent"
            left_in_block = rng.randint(200, 500)
            if client == "confluent" and deferred_big:
                current.extend(deferred_big)
                deferred_big.clear()
        left_in_block -= 1
        if isinstance(x, _Bad):
            built: Any = x.raw if x.prebuilt else POISON[x.name].build(rng, x.pid, x.pos_ms)
            # keyed by the id it carries (so also by "\x00offsets:0" and the like)
            pid = built.get("prediction_id") if isinstance(built, dict) else x.pid
            key = pid.encode() if isinstance(pid, str) and rng.random() < 0.7 else None
            msg = Message(topics.of(x.kind), key, _encode(built), x.pos_ms)
            if x.name and POISON[x.name].big and client != "confluent":
                deferred_big.append(msg)
            else:
                current.append(msg)
            continue
        route = rng.random()
        if client == "confluent" and route < in_arrays:
            arrays[x.kind].append(x)
            oldest = arrays[x.kind][0].pos_ms
            if len(arrays[x.kind]) >= target[x.kind] or x.pos_ms - oldest > 2000:
                flush_array(x.kind)
            continue
        key = None if route > 1 - unkeyed else x.pid.encode()
        current.append(Message(topics.of(x.kind), key, orjson.dumps(x.event), x.pos_ms))
    close_segment()
    if deferred_big:
        segments.append(Segment("confluent", deferred_big))
    # element poison not placed in an array (too few arrays): standalone messages
    for name in element_pool:
        poison = POISON[name]
        value = _encode(poison.build(rng, bad_pid(), end_ms))
        segments.append(
            Segment("confluent", [Message(topics.of(poison.kind), None, value, end_ms)])
        )
        expected.dlq[poison.reason] += 1
    stamps = [m.timestamp_ms for s in segments for m in s.messages]
    return Stream(segments, expected, models, (min(stamps), max(stamps)))


# --- clean and batched streams ----------------------------------------------------------------


def clean_stream(
    seed: int,
    topics: Topics,
    *,
    base_ms: int,
    models: list[ModelSpec],
    per_model: int,
    span_ms: int = 3 * HOUR_MS,
    unkeyed: float = 0.05,
) -> Stream:
    """Valid traffic only, one event per message, through librdkafka's default partitioner
    (keyed by prediction_id, a few unkeyed). Duplicated labels carry the same content."""
    rng = random.Random(seed)
    traffic = valid_traffic(
        rng,
        models,
        per_model=per_model,
        base_ms=base_ms,
        span_ms=span_ms,
        formats="rfc3339",
        absurd_labels=0,
    )
    messages = [
        Message(
            topics.of(it.kind),
            None if rng.random() < unkeyed else it.pid.encode(),
            orjson.dumps(it.event),
            it.pos_ms,
        )
        for it in traffic.items
    ]
    stamps = [m.timestamp_ms for m in messages]
    return Stream(
        [Segment("confluent", messages)],
        _expected(traffic, models),
        models,
        (min(stamps), max(stamps)),
    )


def batched_stream(
    seed: int,
    topics: Topics,
    *,
    base_ms: int,
    models: list[ModelSpec],
    per_model: int,
    partitions: int,
    span_ms: int = 24 * HOUR_MS,
    batch: int = 200,
    chunks: int = 6,
    labelled: float = 0.9,
) -> tuple[list[list[Message]], Expected]:
    """Valid traffic as JSON arrays of up to ``batch`` events, each array on the murmur2
    home partition of its elements (what the producer helper does), cut into ``chunks``
    consecutive parts of the timeline. Every partition receives its events in event-time
    order."""
    rng = random.Random(seed)
    traffic = valid_traffic(
        rng,
        models,
        per_model=per_model,
        base_ms=base_ms,
        span_ms=span_ms,
        labelled=labelled,
        formats="epoch_ms",
        odd_ids=False,
        absurd_labels=0,
        jitter=0.0,
    )
    per_chunk = -(-len(traffic.items) // chunks)
    out: list[list[Message]] = []
    for c in range(chunks):
        part = traffic.items[c * per_chunk : (c + 1) * per_chunk]
        out.append(list(_arrays(part, topics, partitions, batch)))
    return out, _expected(traffic, models)


def _arrays(items: list[Item], topics: Topics, partitions: int, batch: int) -> Iterator[Message]:
    buffers: dict[tuple[Kind, int], list[Item]] = {}
    homes: dict[str, int] = {}  # a prediction and its label share the hash

    def message(kind: Kind, p: int, elements: list[Item]) -> Message:
        value = orjson.dumps([e.event for e in elements])
        return Message(topics.of(kind), None, value, elements[-1].pos_ms, partition=p)

    for it in items:
        home = homes.pop(it.pid, None)
        if home is None:
            home = homes[it.pid] = murmur2_partition(it.pid, partitions)
        slot = (it.kind, home)
        buf = buffers.setdefault(slot, [])
        buf.append(it)
        if len(buf) >= batch:
            yield message(slot[0], slot[1], buf)
            buffers[slot] = []
    for (kind, p), buf in buffers.items():
        if buf:
            yield message(kind, p, buf)
