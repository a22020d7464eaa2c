"""Decoding candidates per event, in one process: what typed decoding with msgspec would
save against the parser the worker and replay use (orjson, then validation in Python).

The parser's cost is decoding plus validation plus building the Prediction; msgspec can
replace the decoding (and the type checks) only, since the id, length, time-range and
feature rules have to stay in Python to keep the dead-letter reasons. So the gain
available is the decoding difference, measured here on the producer helper's arrays of
500 events and on one event per message, and set against the engine's cost per pair.

    python -m bench.decoding [--quick]
"""

from __future__ import annotations

import argparse
import json
import timeit
from typing import Any

import orjson

from streams.contract.events import parse_ground_truth, parse_predictions

from .harness import T0_MS, Traffic
from .report import Row, Suite, markdown

try:
    import msgspec
except ImportError:  # the bench extra: pip install -e '.[bench]'
    msgspec = None  # type: ignore[assignment]


def _decoders() -> tuple[Any, Any, Any, Any]:
    """msgspec decoders for the contract's events, typed as far as msgspec can check."""

    class PredictionEvent(msgspec.Struct):
        prediction_id: str
        model_id: str
        prediction: str | int | float | bool
        timestamp: int | str | None = None
        model_version: str | int | float | None = None
        score: float | None = None
        segment: str | None = None
        features: dict[str, Any] | None = None

    class LabelEvent(msgspec.Struct):
        prediction_id: str
        label: str | int | float | bool
        timestamp: int | str | None = None

    return (
        msgspec.json.Decoder(list[PredictionEvent]),
        msgspec.json.Decoder(list[LabelEvent]),
        msgspec.json.Decoder(PredictionEvent),
        msgspec.json.Decoder(LabelEvent),
    )


def _per_event_us(fn: Any, events: int, number: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=5)) / number / events * 1e6


def run(quick: bool = False) -> Suite:
    suite = Suite("decoding candidates (per event, in process)")
    if msgspec is None:
        suite.notes.append("msgspec is not installed: pip install -e '.[bench]'")
        return suite
    batch_p, batch_g, one_p, one_g = _decoders()
    events = list(Traffic(500, 100).events())
    record_ms = T0_MS + 3_600_000
    preds = orjson.dumps([p for p, _ in events])
    labels = orjson.dumps([g for _, g in events])
    single_p, single_g = orjson.dumps(events[0][0]), orjson.dumps(events[0][1])
    n_batch, n_single = (20, 5_000) if quick else (200, 50_000)
    cases = [
        (
            "array of 500 predictions",
            lambda: parse_predictions(preds, record_timestamp_ms=record_ms),
            lambda: orjson.loads(preds),
            lambda: batch_p.decode(preds),
            500,
            n_batch,
        ),
        (
            "array of 500 labels",
            lambda: parse_ground_truth(labels, record_timestamp_ms=record_ms),
            lambda: orjson.loads(labels),
            lambda: batch_g.decode(labels),
            500,
            n_batch,
        ),
        (
            "one prediction per message",
            lambda: parse_predictions(single_p, record_timestamp_ms=record_ms),
            lambda: orjson.loads(single_p),
            lambda: one_p.decode(single_p),
            1,
            n_single,
        ),
        (
            "one label per message",
            lambda: parse_ground_truth(single_g, record_timestamp_ms=record_ms),
            lambda: orjson.loads(single_g),
            lambda: one_g.decode(single_g),
            1,
            n_single,
        ),
    ]
    for name, parse, loads, typed, size, number in cases:
        whole = _per_event_us(parse, size, number)
        decode = _per_event_us(loads, size, number)
        msg = _per_event_us(typed, size, number)
        suite.rows.append(
            Row(f"parser today, {name}", whole, "us/event", "orjson.loads alone", decode,
                whole / decode)
        )  # fmt: skip
        suite.rows.append(
            Row(f"msgspec typed decode, {name}", msg, "us/event", "orjson.loads alone", decode,
                msg / decode)
        )  # fmt: skip
        suite.details[name] = {"parser_us": whole, "orjson_us": decode, "msgspec_us": msg}
    suite.notes.append(
        "the most msgspec could save is (orjson - msgspec) per event, twice per pair; the "
        "id, length, time-range and feature checks stay in Python either way"
    )
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    suite = run(parser.parse_args().quick)
    print(markdown([suite.as_dict()]))
    print(json.dumps(suite.details, indent=1))


if __name__ == "__main__":
    main()
