"""Features on their way in: parsed bounded, carried on the wire, counted when cut.

Producers choose the features, so hostile ones (huge objects, NaN, nested documents, long
strings, odd keys) must come out bounded and counted, never as a crash or a dead letter of
an otherwise valid prediction; and the internal formats must carry them (a prediction
forwarded to its home partition, a served prediction on its way to the detect step) while
messages written before features were kept still decode.
"""

from __future__ import annotations

import math
import random
from typing import Any

import engine_scenarios as es
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_live_steps import LiveRun, by_id, replayed

from streams.contract.events import parse_predictions, prediction_from_dict
from streams.contract.features import (
    MAX_CATEGORY_LENGTH,
    MAX_FEATURE_NAME,
    MAX_FEATURES,
    normalise_features,
)
from streams.contract.internal import (
    Forwarded,
    JoinedOutcomes,
    Seen,
    decode_forwarded,
    decode_outcomes_message,
    encode_forwarded,
    encode_joined_outcomes,
)
from streams.engine.join_step import InputRecord, JoinStep
from streams.engine.rules import InputRules

T = 1_795_000_000_000


def event(**extra: Any) -> dict[str, Any]:
    return {"prediction_id": "p-1", "model_id": "fraud", "prediction": 1, "timestamp": T, **extra}


def parsed(features: Any) -> Any:
    (p,) = parse_predictions(orjson.dumps(event(features=features)), record_timestamp_ms=T)[0]
    return p


def test_plain_features_are_kept_as_sent_and_cost_no_copy() -> None:
    features = {"amount": 12.5, "n": 3, "country": "nl", "vip": False, "note": None}
    p = prediction_from_dict(event(features=features), T)
    assert p.features is features and p.features_cut == 0
    assert prediction_from_dict(event(), T).features is None


@pytest.mark.parametrize(
    ("features", "kept", "cut"),
    [
        ({"x": "y" * 5000}, {"x": "y" * MAX_CATEGORY_LENGTH}, 1),
        ({"doc": {"a": {"b": [1, 2, 3]}}, "l": [1], "e": {}}, {"doc": {}, "l": [], "e": {}}, 2),
        ({"k" * (MAX_FEATURE_NAME + 1): 1, "": 2, "a\nb": 3, "ok": 4}, {"ok": 4}, 3),
        ({f"f{i}": i for i in range(10_000)}, {f"f{i}": i for i in range(MAX_FEATURES)}, 9936),
    ],
)
def test_hostile_features_are_bounded_and_counted(
    features: dict[str, Any], kept: dict[str, Any], cut: int
) -> None:
    p = parsed(features)
    assert p.features == kept and p.features_cut == cut
    assert p.prediction == 1  # the prediction itself is served as usual


def test_what_json_cannot_carry_but_a_python_caller_can_is_bounded_too() -> None:
    weird = {
        "nan": math.nan, "inf": -math.inf, "huge": 10**400, "big": 10**30, 7: "int key",
        "obj": object(), "tuple": (1, 2), "set": {1}, "ok": 1.5,
    }  # fmt: skip
    p = prediction_from_dict(event(features=weird), T)
    assert p.features == {
        "nan": None, "inf": None, "huge": None, "big": 1e30, "tuple": [], "ok": 1.5
    }  # fmt: skip
    assert p.features_cut == 8  # all but "ok"
    orjson.dumps(p.features)  # what travels on internal topics encodes


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=100)
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=140), json_values, max_size=80))
def test_normalising_any_json_object_is_bounded_and_idempotent(features: dict[str, Any]) -> None:
    kept, cut = normalise_features(features)
    assert len(kept) <= MAX_FEATURES and cut <= len(features) * 2
    for key, value in kept.items():
        assert 0 < len(key) <= MAX_FEATURE_NAME and key.isprintable()
        assert value in ({}, []) or isinstance(value, bool | int | float | str | type(None))
        assert not isinstance(value, str) or len(value) <= MAX_CATEGORY_LENGTH
    again, cut_again = normalise_features(orjson.loads(orjson.dumps(kept)))
    assert again == kept and cut_again == 0  # what travels reads back the same


def test_a_forwarded_prediction_keeps_its_features() -> None:
    p = parsed({"amount": 3.0, "doc": {"a": 1}})
    (message,) = encode_forwarded(Forwarded("p", 1, [p], T))
    (back,) = decode_forwarded("p", message).events
    assert back == p and back.features == {"amount": 3.0, "doc": {}}
    plain = prediction_from_dict(event(), T)
    (message,) = encode_forwarded(Forwarded("p", 1, [plain], T))
    assert b"features" not in message  # no cost without features


def test_seen_carries_features_as_an_optional_sixth_item() -> None:
    with_features = Seen("p-1", "fraud", T, 1, 0.5, "v1", True, {"x": 1.5, "c": "nl"})
    without = Seen("p-2", "fraud", T + 1, 0, None, None)
    dead = Seen("!0:1:0", "fraud", T + 2, valid=False)
    (message,) = encode_joined_outcomes(
        JoinedOutcomes(0, [], {"p": 1}, [with_features, without, dead])
    )
    doc = orjson.loads(message)
    assert [len(s) for s in doc["seen"]] == [6, 5, 2]
    back = decode_outcomes_message(message)
    assert isinstance(back, JoinedOutcomes)
    assert list(back.seen) == [with_features, without, dead]


def test_seen_messages_written_before_features_still_decode() -> None:
    old = orjson.dumps(
        {
            "join": 0,
            "offsets": {"p": 1},
            "m": "fraud",
            "seen": [["p-1", T, 1, 0.5, "v1"], ["!x", T]],
        }
    )
    back = decode_outcomes_message(old)
    assert isinstance(back, JoinedOutcomes)
    assert [s.features for s in back.seen] == [None, None] and back.seen[0].valid


@pytest.mark.parametrize(
    ("item", "says"),
    [
        (["p-1", T, 1, 0.5, "v1", [1]], "features must be an object"),
        (["p-1", T, 1, 0.5], "2, 5 or 6"),
    ],
)
def test_a_bad_seen_item_says_what_is_wrong(item: list[Any], says: str) -> None:
    raw = orjson.dumps({"join": 0, "offsets": {}, "m": "fraud", "seen": [item]})
    with pytest.raises(ValueError, match=says):
        decode_outcomes_message(raw)


def test_features_written_by_something_else_are_bounded_when_read() -> None:
    item = ["p-1", T, 1, None, None, {"blob": "x" * 10_000, "nested": {"a": 1}}]
    raw = orjson.dumps({"join": 0, "offsets": {}, "m": "fraud", "seen": [item]})
    back = decode_outcomes_message(raw)
    assert isinstance(back, JoinedOutcomes)
    assert back.seen[0].features == {"blob": "x" * MAX_CATEGORY_LENGTH, "nested": {}}


def test_the_join_step_sends_features_on_and_counts_what_it_cut() -> None:
    step = JoinStep(
        0,
        1,
        store={},
        meta={},
        ttl_ms=86_400_000,
        rules=InputRules(lag_ms=1000),
        task_for=lambda m: None,
    )
    events = [
        event(prediction_id="a", features={"x": 1.0, "long": "y" * 500}),
        event(prediction_id="b"),
        event(prediction_id="c", features={"deep": {"z": [1]}, "nan": None}),
    ]
    out = step.process([InputRecord("p", "predictions", 0, 0, None, orjson.dumps(events), T)])
    assert out.counts["features_cut"] == 2 and not out.dead_letters
    (joined,) = out.outcomes[0]
    assert [s.features for s in joined.seen] == [
        {"x": 1.0, "long": "y" * MAX_CATEGORY_LENGTH},
        None,
        {"deep": {}, "nan": None},
    ]


def features_scenario(seed: int, partitions: int) -> Any:
    """One model's predictions on ``partitions`` partitions, unkeyed (most are forwarded to
    their home), one per message: ``amount`` renamed and ``age`` shifted half way."""
    rng = random.Random(seed)
    logs: dict[tuple[str, int], list[InputRecord]] = {("p", q): [] for q in range(partitions)}
    clock = {q: es.BASE_MS for q in range(partitions)}
    for k in range(3000):
        q = rng.randrange(partitions)
        clock[q] += rng.randrange(1, 4000)
        at = clock[q]
        features: dict[str, Any] = {"amount": rng.gauss(50, 8), "age": rng.gauss(40, 5)}
        if k >= 1500:
            features["amount_eur"] = features.pop("amount")
            features["age"] += 15
        value = orjson.dumps(event(prediction_id=f"p{k:05d}", timestamp=at, features=features))
        log = logs[("p", q)]
        log.append(InputRecord("p", "predictions", q, len(log), None, value, at))
    return es.Scenario(partitions, logs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seed", "partitions"), [(1, 2), (2, 3)])
def test_features_cross_the_encoded_topics_and_live_and_replay_agree(
    seed: int, partitions: int
) -> None:
    schedule = random.Random(seed)  # fetches of random sizes, join and detect interleaved
    scenario = features_scenario(seed, partitions)
    expected = [a for a in replayed(scenario) if a["kind"] in ("feature_drift", "schema_change")]
    assert {(a["kind"], a["signal"]) for a in expected} == {
        ("feature_drift", "age"),
        ("schema_change", "keys"),
    }, expected
    live = [
        a
        for a in LiveRun(scenario, schedule).run()
        if a["kind"] in ("feature_drift", "schema_change")
    ]
    assert by_id(live) == by_id(expected)
