"""Smoke runs of the Kafka benchmarks at tiny sizes: the harness, the worker it times and
the figures it reports must hang together (the full sizes run only by hand)."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench import __main__ as bench_main
from bench import latency, throughput
from bench.harness import Traffic, produce, stack
from bench.peers import create_quix_topics, quix_run


@pytest.mark.separate  # half a minute: with the other long runs, in .ci/run's own step
@pytest.mark.timeout(300)
def test_throughput_smoke_times_every_pair_and_reports_ratios() -> None:
    suite = throughput.run(quick=True, pairs=3000, models=7, forms=("single", "batched"))
    labels = {"single": "one event per message", "batched": "batched (producer helper)"}
    assert [r.metric for r in suite.rows] == [
        f"{who}, {labels[form]}"
        for form in ("single", "batched")
        for who in ("worker", "worker", "replay engine", "worker", "worker")
    ]
    for i, form in enumerate(("single", "batched")):
        worker, vs_confluent, replay, worker_vs_replay, worker_vs_off = suite.rows[
            5 * i : 5 * i + 5
        ]
        d = suite.details[form]
        # the same worker with the label-free signals off, on the same input
        assert worker_vs_off.value == d["worker_pairs_per_s"]
        assert worker_vs_off.baseline_value == d["worker_label_free_off_pairs_per_s"] > 0
        assert d["pairs"] == 3000
        # the helper packs many events per message, the plain form one per message
        assert d["messages"] == 6000 if form == "single" else d["messages"] < 100
        assert worker.value == worker_vs_replay.value == d["worker_pairs_per_s"] > 0
        assert replay.value == worker_vs_replay.baseline_value == d["replay_pairs_per_s"] > 0
        assert worker.baseline_value == replay.baseline_value == d["aiokafka_pairs_per_s"]
        assert vs_confluent.baseline_value == d["confluent_pairs_per_s"] > 0
        for row in (worker, vs_confluent, replay, worker_vs_replay):
            assert row.ratio == pytest.approx(row.value / row.baseline_value)
        assert worker.met is (None if form == "single" else worker.value >= 100_000)
        assert replay.met is (replay.ratio >= 0.3)
        assert d["worker_rss_end_mib"] >= 50


@pytest.mark.separate  # a 25 s consumer-group join against tansu: in .ci/run's own step
@pytest.mark.timeout(300)
def test_the_quix_streams_peer_does_the_workers_join() -> None:
    """The peer the throughput suite compares with must do the same job: every pair
    joined once, and the wrong predictions it scores are exactly those of the traffic."""
    traffic = Traffic(2_000, 7)
    wrong = sum(p["prediction"] != g["label"] for p, g in traffic.events())
    for form in ("single", "batched"):
        with stack() as s:
            settings = s.settings(f"quix-{form}")
            asyncio.run(create_quix_topics(settings))
            asyncio.run(produce(settings, traffic, form))
            run = quix_run(settings, traffic.pairs, timeout=240)
        assert run.pairs == traffic.pairs, form
        assert run.errors == wrong, form
        assert run.seconds > 0 and run.out_of_order >= 0


@pytest.mark.separate  # with the throughput smoke, in .ci/run's own step
@pytest.mark.timeout(300)
def test_latency_smoke_measures_alerts_after_their_label() -> None:
    suite = latency.run(quick=True, rate=800, seconds=6, reorder_lag_ms=200)
    lats = suite.details["latencies_s"]
    assert suite.details["degradation_alerts"] == len(lats) >= 1
    # an alert cannot be read before the label that triggered it was sent, and at this
    # load it must not take anywhere near the whole run
    assert all(0 < x < 6 for x in lats), lats
    p50 = next(r for r in suite.rows if r.metric == "latency p50")
    assert min(lats) <= p50.value <= max(lats)


def test_runner_writes_json_and_markdown(tmp_path) -> None:
    assert bench_main.main(["--quick", "--only", "detector_overhead", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results-quick.json").read_text())
    assert [s["suite"] for s in doc["suites"]] == ["detector_overhead"]
    assert doc["suites"][0]["rows"], "a suite without figures"
    md = (tmp_path / "results-quick.md").read_text()
    assert md.startswith("**") and doc["suites"][0]["rows"][0]["metric"] in md
