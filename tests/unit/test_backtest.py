"""The replay engine is deterministic: how partitions interleave does not change what it
detects, and a sweep's combinations are exactly the product of its values."""

from __future__ import annotations

from functools import cache

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.config import DetectorSettings
from streams.contract.internal import Kind
from streams.dev.simulate import build_scenario
from streams.engine.join_step import InputRecord
from streams.engine.partitioning import partition_for
from streams.engine.rules import InputRules
from streams.replay.backtest import Backtest, BacktestResult, expand_sweeps

PARTITIONS = 3
TOPICS: dict[Kind, str] = {"p": "predictions", "g": "ground-truth"}


@cache
def partitioned() -> list[list[InputRecord]]:
    """The scenario's records per source partition (predictions 0-2, then labels 0-2), in
    arrival order (as Kafka keeps them), one event per message keyed by prediction_id."""
    scenario = build_scenario(models=3, predictions_per_model=2500, degraded=2, seed=4)
    logs: list[list[InputRecord]] = [[] for _ in range(2 * PARTITIONS)]
    kind: Kind
    for kind, event in scenario.events:
        key = event["prediction_id"].encode()
        home = partition_for(key, PARTITIONS)
        log = logs[home if kind == "p" else PARTITIONS + home]
        value = orjson.dumps(event)
        log.append(InputRecord(kind, TOPICS[kind], home, len(log), key, value, event["timestamp"]))
    return logs


def run(
    chunks: list[int], lag_ms: int = 300_000, models: set[str] | None = None
) -> dict[str, list[dict]]:
    """Read the partitions round-robin, ``chunks[i]`` records at a time from partition i."""
    return {
        name: sorted(a["alert_id"] for a in alerts)
        for name, alerts in backtest_of(chunks, lag_ms, models).alerts.items()
    }


def backtest_of(chunks: list[int], lag_ms: int, models: set[str] | None) -> BacktestResult:
    backtest = Backtest(
        expand_sweeps(DetectorSettings(), ["ph.threshold=25,400"]),
        partitions=PARTITIONS,
        ttl_ms=7 * 86_400_000,
        rules=InputRules(lag_ms=lag_ms),
        models=models,
    )
    logs = partitioned()
    positions = [0] * len(logs)
    while any(pos < len(log) for pos, log in zip(positions, logs, strict=True)):
        read: list[InputRecord] = []  # one fetch: a chunk of every partition
        for i, log in enumerate(logs):
            read += log[positions[i] : positions[i] + chunks[i]]
            positions[i] += chunks[i]
        backtest.feed(read)
    result = backtest.finish()
    assert result.late_outcomes == 0
    # the order alerts of different models come out in may vary; the alerts may not
    return result


@cache
def reference() -> dict[str, list[dict]]:
    """Everything read before anything is released: the canonical order by construction."""
    return run([10**9] * (2 * PARTITIONS))


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=2 * PARTITIONS, max_size=2 * PARTITIONS))
def test_interleaving_of_partitions_does_not_change_the_alerts(chunks: list[int]) -> None:
    assert run(chunks) == reference()


def test_the_scenario_is_detected_and_sweeps_differ() -> None:
    found = reference()
    assert set(found) == {"ph.threshold=25", "ph.threshold=400"}
    assert found["ph.threshold=25"], "the degraded models must be detected"
    assert found["ph.threshold=25"] != found["ph.threshold=400"]


def test_expand_sweeps_is_the_product_and_rejects_bad_input() -> None:
    combos = expand_sweeps(DetectorSettings(), ["adwin.delta=0.002,0.0005", "ph.threshold=25,50"])
    assert [c.name for c in combos] == [
        "adwin.delta=0.002 ph.threshold=25",
        "adwin.delta=0.002 ph.threshold=50",
        "adwin.delta=0.0005 ph.threshold=25",
        "adwin.delta=0.0005 ph.threshold=50",
    ]
    assert combos[1].settings.for_model("m").page_hinkley.threshold == 50
    assert combos[2].settings.for_model("m").adwin.delta == 0.0005
    assert [c.name for c in expand_sweeps(DetectorSettings(), [])] == ["default"]
    for bad in (["adwin.delta"], ["nope.x=1"], ["adwin.delta=2"], ["=1"]):
        with pytest.raises(ValueError):
            expand_sweeps(DetectorSettings(), bad)


def test_a_backtest_of_some_models_finds_what_the_whole_one_finds_for_them() -> None:
    """Restricting a replay to models (``--model``) leaves their detections and summaries
    as they are in the whole replay: the other models' events still move the watermark."""
    chunks = [97, 13, 250, 61, 5, 180]
    whole = backtest_of(chunks, 300_000, None)
    chosen = {m for m in whole.models if m.endswith("-eu")} or set(sorted(whole.models)[:1])
    some = backtest_of(chunks, 300_000, chosen)
    assert set(some.models) == chosen
    for name, alerts in whole.alerts.items():
        mine = sorted(a["alert_id"] for a in alerts if a["model_id"] in chosen)
        assert sorted(a["alert_id"] for a in some.alerts[name]) == mine
    for model in chosen:
        assert some.models[model].to_dict() == whole.models[model].to_dict()
    assert 0 < some.events < whole.events
