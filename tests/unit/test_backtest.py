"""The replay engine is deterministic: how partitions interleave does not change what it
detects, and a sweep's combinations are exactly the product of its values."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.config import DetectorSettings
from streams.backtest import Backtest, expand_sweeps
from streams.partitioning import partition_for
from streams.records import ground_truth_from_dict, prediction_from_dict
from streams.simulate import build_scenario

PARTITIONS = 3


@cache
def partitioned() -> list[list[tuple[str, object]]]:
    """The scenario's events per source partition, in arrival order (as Kafka keeps them)."""
    scenario = build_scenario(models=3, predictions_per_model=2500, degraded=2, seed=4)
    logs: list[list[tuple[str, object]]] = [[] for _ in range(2 * PARTITIONS)]
    for kind, event in scenario.events:
        home = partition_for(event["prediction_id"], PARTITIONS)
        if kind == "p":
            logs[home].append(("p", prediction_from_dict(event, 0)))
        else:
            logs[PARTITIONS + home].append(("g", ground_truth_from_dict(event, 0)))
    return logs


def run(chunks: list[int], lag_ms: int = 300_000) -> dict[str, list[dict]]:
    """Read the partitions round-robin, ``chunks[i]`` events at a time from partition i."""
    backtest = Backtest(
        expand_sweeps(DetectorSettings(), ["ph.threshold=25,400"]),
        partitions=PARTITIONS,
        ttl_ms=7 * 86_400_000,
        lag_ms=lag_ms,
    )
    logs = partitioned()
    positions = [0] * len(logs)
    while any(pos < len(log) for pos, log in zip(positions, logs, strict=True)):
        for i, log in enumerate(logs):
            part = log[positions[i] : positions[i] + chunks[i]]
            positions[i] += len(part)
            preds = [e for k, e in part if k == "p"]
            labels = [e for k, e in part if k == "g"]
            source = f"src-{i}"
            if preds:
                backtest.predictions(source, i % PARTITIONS, preds)  # type: ignore[arg-type]
            if labels:
                backtest.labels(source, i % PARTITIONS, labels)  # type: ignore[arg-type]
        backtest.release(backtest.watermark(len(logs)))
    result = backtest.finish()
    assert result.late_outcomes == 0
    # the order alerts of different models come out in may vary; the alerts may not
    return {name: sorted(a["alert_id"] for a in alerts) for name, alerts in result.alerts.items()}


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
