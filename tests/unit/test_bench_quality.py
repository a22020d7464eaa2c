"""The detection-quality harness generates what it claims and scores what it sees."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality import Scenario, Stats, build_stream, configurations, detect, evaluate
from detectors.config import MonitorConfig


def errors_in_detector_order(stream) -> list[float]:
    """Errors sorted as the sequencer releases them when nothing is late."""
    outcomes = sorted(o for chunk in stream for o in zip(*chunk, strict=True))
    return [e for _, _, e in outcomes]


def test_a_big_abrupt_change_is_detected_by_the_default_bank_after_the_change() -> None:
    stream = build_stream(Scenario("t", 0.05, 0.50, n_before=3000, n_after=2000), seed=0)
    assert stream.change_at == 3000
    alerts = detect(stream, MonitorConfig())
    stats = Stats()
    stats.add(stream, sorted({i for i, _ in alerts}))
    assert (stats.detected, stats.false_alarms, stats.clean_outcomes) == (1, 0, 3000)
    assert 0 < stats.delays[0] < 300, "a jump to 50 % errors takes a few dozen outcomes"


@pytest.mark.parametrize(("rate", "continuous"), [(0.05, False), (0.30, False), (1.0, True)])
def test_a_stationary_stream_has_the_requested_error_rate(rate: float, continuous: bool) -> None:
    s = Scenario("s", rate, n_before=200_000, continuous=continuous, seeds=1)
    stream = build_stream(s, seed=3)
    times = [t for chunk in stream for t in chunk[0]]
    errors = [e for chunk in stream for e in chunk[2]]
    assert stream.change_at is None and len(errors) == 200_000
    assert all(a < b for a, b in zip(times, times[1:], strict=False)), "labels at prediction time"
    expected = math.sqrt(2 / math.pi) if continuous else rate
    assert abs(np.mean(errors) - expected) < 0.005
    if not continuous:
        assert set(errors) == {0.0, 1.0}


def test_label_delay_and_jitter_reorder_arrivals_and_the_change_point_follows() -> None:
    s = Scenario("d", 0.05, 0.30, n_before=4000, n_after=4000, label_delay_s=600, jitter_s=60)
    stream = build_stream(s, seed=1)
    ids = [int(p) for chunk in stream for p in chunk[1]]
    assert ids != sorted(ids), "arrivals are out of prediction order"
    assert stream.late == 0, "jitter within the lag: nothing is late"
    canonical = sorted(o for chunk in stream for o in zip(*chunk, strict=True))
    first_after = next(k for k, (_, p, _) in enumerate(canonical) if int(p) >= 4000)
    assert stream.change_at == first_after < 4000  # early labels of post-change predictions
    errors = errors_in_detector_order(stream)
    assert np.mean(errors[:first_after]) < 0.07 and np.mean(errors[-2000:]) > 0.25


def test_labels_later_than_the_lag_make_late_outcomes() -> None:
    s = Scenario("l", 0.05, 0.10, n_before=2000, n_after=2000, jitter_s=600, lag_s=60)
    assert build_stream(s, seed=0).late > 0


def test_a_gradual_change_climbs_to_its_final_rate() -> None:
    s = Scenario("g", 0.10, 0.40, n_before=1000, n_after=40_000, ramp=10_000, seeds=1)
    errors = errors_in_detector_order(build_stream(s, seed=2))
    assert abs(np.mean(errors[:1000]) - 0.10) < 0.03
    assert abs(np.mean(errors[1000:3000]) - 0.13) < 0.03  # 10-16 % over the first 2000
    assert abs(np.mean(errors[11_000:]) - 0.40) < 0.01


def test_scoring_counts_alerts_before_the_change_as_false_and_the_first_after_as_delay() -> None:
    stream = build_stream(Scenario("t", 0.05, 0.50, n_before=100, n_after=100), seed=0)
    stats = Stats()
    stats.add(stream, [5, 100, 120, 130])
    stats.add(stream, [])
    assert (stats.runs, stats.detected, stats.delays, stats.false_alarms) == (2, 1, [20], 2)
    assert stats.rate == 0.5 and stats.fa_per_million == 2 / 200 * 1e6


def test_a_bank_is_the_union_of_its_detectors_alone() -> None:
    """``evaluate`` composes banks from single-detector runs and checks that against the
    default bank run as one track; it raises if the two ever differ."""
    suite = [Scenario("t", 0.05, 0.30, n_before=2000, n_after=3000, seeds=2)]
    table = evaluate(suite, configurations())
    bank = table["t", "default", "bank"]
    assert bank.detected == 2 and bank.false_alarms == 0
    assert bank.delays == [
        min(a, p)
        for a, p in zip(
            table["t", "default", "adwin"].delays,
            table["t", "default", "page_hinkley"].delays,
            strict=True,
        )
    ]
