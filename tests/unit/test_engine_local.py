"""The in-memory topology and the engine details it relies on: what callers observe, the
model filter, the input rules and the internal wire format."""

from __future__ import annotations

from collections import Counter

import engine_scenarios as es
import orjson
import pytest

from streams.contract.events import Outcome, Prediction
from streams.contract.internal import (
    Forwarded,
    JoinedOutcomes,
    decode_forwarded,
    decode_outcomes_message,
    encode_forwarded,
    encode_joined_outcomes,
)
from streams.engine.join_step import InputRecord, JoinStep
from streams.engine.partitioning import partition_for
from streams.engine.rules import InputRules


def test_every_accepted_prediction_is_observed_once_wherever_it_was_read() -> None:
    scenario = es.build(3, partitions=4)
    observed: Counter[str] = Counter()
    topo = es.topology(4, on_predictions=lambda ps: observed.update(p.prediction_id for p in ps))
    topo.feed(scenario.records())
    topo.finish()
    sent: Counter[str] = Counter()
    foreign = 0
    for (kind, q), log in scenario.logs.items():
        for rec in log:
            if kind == "p" and rec.value != b"{not json":
                doc = orjson.loads(rec.value)
                events = doc if isinstance(doc, list) else [doc]
                sent.update(e["prediction_id"] for e in events)
                foreign += sum(partition_for(e["prediction_id"], 4) != q for e in events)
    assert foreign > 0, "some predictions must have been read away from their home"
    assert observed == sent


def test_only_the_chosen_models_reach_the_detectors_and_find_what_they_find_anyway() -> None:
    scenario = es.build(2, partitions=3)
    whole = es.reference(scenario)
    some = es.reference(scenario, models={"m1"})
    assert set(some.per_model) == {"m1"}
    assert es.found(some) == [f for f in es.found(whole) if f[0] == "m1"] != []
    assert some.per_model["m1"] == whole.per_model["m1"]


def test_records_of_an_unknown_partition_are_refused() -> None:
    topo = es.topology(2)
    with pytest.raises(ValueError, match="partitions 0..1"):
        topo.feed([InputRecord("p", "predictions", 2, 0, None, b"{}", 0)])


def step(rules: InputRules) -> JoinStep:
    return JoinStep(0, 1, store={}, meta={}, ttl_ms=es.TTL_MS, rules=rules, task_for=lambda m: None)


def prediction_record(timestamp_ms: int, record_timestamp_ms: int) -> InputRecord:
    event = {"prediction_id": "p1", "model_id": "m", "prediction": 1, "timestamp": timestamp_ms}
    return InputRecord("p", "predictions", 0, 0, b"p1", orjson.dumps(event), record_timestamp_ms)


@pytest.mark.parametrize(
    ("rules", "event_ms", "record_ms", "accepted"),
    [
        (InputRules(), 5_000, 6_000, False),  # before the default earliest time (2000)
        (InputRules(min_timestamp_ms=0), 5_000, 6_000, True),
        (InputRules(min_timestamp_ms=0, max_skew_ms=1_000), 8_000, 6_000, False),
        (InputRules(min_timestamp_ms=0, max_skew_ms=2_000), 8_000, 6_000, True),
    ],
)
def test_the_input_rules_reach_the_parser(
    rules: InputRules, event_ms: int, record_ms: int, accepted: bool
) -> None:
    out = step(rules).process([prediction_record(event_ms, record_ms)])
    assert [d.reason for d in out.dead_letters] == ([] if accepted else ["timestamp_out_of_range"])


def test_forwarded_events_decode_whatever_the_rules_let_in() -> None:
    """Events on a re-key topic passed the input rules when first read: decoding them does
    not apply the contract's default window again (which would dead-letter all of them)."""
    p = Prediction("p1", "m", "1", 5_000, 1, None, None)
    f = Forwarded("p", 2, [p], 5_000)
    (raw,) = encode_forwarded(f)
    assert decode_forwarded("p", raw) == f


def test_joined_outcomes_carry_their_batch_offsets_over_the_wire() -> None:
    o = Outcome("p1", "m", None, 5_000, 6_000, 1, 0, 1.0)
    j = JoinedOutcomes(1, [o], {"predictions": 41, "wk-rekey-ground-truth": 7})
    (raw,) = encode_joined_outcomes(j)
    assert decode_outcomes_message(raw) == j


def test_a_record_whose_processing_raises_is_dead_lettered_alone() -> None:
    """A bug reached by one record (here: the task lookup raising for one model) dead-letters
    that record with the exception type; the rest of the batch joins as usual."""

    def task_for(model_id: str) -> None:
        if model_id == "cursed":
            raise RuntimeError("lookup failed for this model")
        return None

    store: dict[str, object] = {}
    meta: dict[str, object] = {}
    s = JoinStep(0, 1, store=store, meta=meta, ttl_ms=10**9, rules=InputRules(), task_for=task_for)
    t = 1_800_000_000_000

    def rec(kind: str, offset: int, event: dict[str, object]) -> InputRecord:
        topic = "predictions" if kind == "p" else "ground-truth"
        return InputRecord(kind, topic, 0, offset, None, orjson.dumps(event), t)  # type: ignore[arg-type]

    batch = [
        rec("p", 0, {"prediction_id": "a", "model_id": "fine", "prediction": 1, "timestamp": t}),
        rec("p", 1, {"prediction_id": "b", "model_id": "cursed", "prediction": 1, "timestamp": t}),
        rec("p", 2, {"prediction_id": "c", "model_id": "fine", "prediction": 0, "timestamp": t}),
        rec("g", 0, {"prediction_id": "a", "label": 1, "timestamp": t}),
        rec("g", 1, {"prediction_id": "b", "label": 1, "timestamp": t}),
        rec("g", 2, {"prediction_id": "c", "label": 1, "timestamp": t}),
    ]
    out = s.process(batch)
    errors = [d for d in out.dead_letters if d.reason == "processing_error"]
    assert [(d.source.topic, d.source.offset) for d in errors] == [("ground-truth", 1)]  # type: ignore[union-attr]
    assert errors[0].fields == {"error_type": "RuntimeError"}
    assert b"RuntimeError" in errors[0].encode()
    joined = sorted(o.prediction_id for g in out.outcomes.values() for j in g for o in j.outcomes)
    assert joined == ["a", "c"]
    assert out.mark is not None and out.mark.offsets == {"predictions": 2, "ground-truth": 2}
