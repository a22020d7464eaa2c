"""The label-free signals bench: its streams are what they claim, and on its quick run the
signals meet their targets (every 10-point shift of the positive rate detected, a silence
and a label outage flagged and resolved, no false alarm on the stationary streams)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest

from bench.quality_signals import (
    DAY_MS,
    HOUR_MS,
    KINDS,
    T0_MS,
    _case,
    build,
    bursty_times,
    calibrated,
    cases,
    drive,
    psi_series,
    run,
    seasonal_times,
    usual_gap_ms,
)
from detectors.config import MonitorConfig
from detectors.histogram import LogHistogram
from detectors.track import ModelTrack

QUICK_BUDGET_S = 30.0


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    began = time.perf_counter()
    suite = run(quick=True)
    return {"suite": suite, "seconds": time.perf_counter() - began}


# --- the streams ---------------------------------------------------------------------------


def test_a_calibrated_classifier_has_the_asked_positive_rate_and_calibrated_scores() -> None:
    rng = np.random.default_rng(0)
    prediction, score, label = calibrated(rng, 200_000, 0.3)
    assert abs(prediction.mean() - 0.3) < 0.005
    assert np.array_equal(prediction == 1, score >= 0.5)
    for low in np.arange(0.0, 1.0, 0.1):  # labels follow the scores
        band = (score >= low) & (score < low + 0.1)
        n, p = band.sum(), score[band].mean()
        if n >= 1000:
            assert abs(label[band].mean() - p) < 4 * math.sqrt(p * (1 - p) / n)
    expected = np.minimum(score, 1 - score).mean()
    assert abs((prediction != label).mean() - expected) < 0.005
    assert abs(expected - 0.136) < 0.005  # (1 - E[c]) / 2 with c ~ Beta(4, 1.5)


def test_bursts_and_seasonality_shape_the_arrivals() -> None:
    rng = np.random.default_rng(1)
    bursts = bursty_times(rng, 100_000, T0_MS)
    gaps = np.diff(bursts)
    assert np.all(gaps >= 0) and (gaps > 1000).mean() == pytest.approx(1 / 20, rel=0.1)
    assert (bursts[-1] - bursts[0]) / 100_000 == pytest.approx(3000, rel=0.05)  # 20 per 60 s
    seasonal = seasonal_times(rng, 500_000, T0_MS)
    phase = ((seasonal - T0_MS) % DAY_MS) / DAY_MS
    peak = ((phase > 0.2) & (phase < 0.3)).sum()  # sin near 1: rate 1.8/s
    trough = ((phase > 0.7) & (phase < 0.8)).sum()  # sin near -1: rate 0.2/s
    assert 7 < peak / trough < 11


def test_daily_batches_land_at_two_the_next_day_and_some_labels_never_come() -> None:
    c = _case("t", "stationary", n=200_000, labels="daily", missing=0.2)
    s = build(c, 0)
    has = s.label_ms >= 0
    assert abs(has.mean() - 0.8 * 0.99) < 0.01  # 20 % never, and 1 % dead-lettered
    assert np.all(s.label_ms[has] % DAY_MS == 2 * HOUR_MS)
    assert np.all(s.label_ms[has] // DAY_MS == s.ms[has] // DAY_MS + 1)
    assert abs((~s.valid).mean() - 0.01) < 0.002 and not np.any(s.label_ms[~s.valid] >= 0)


def test_a_label_outage_only_drops_labels_due_during_it() -> None:
    c = _case("t", "labels", what="stop", before_h=4, outage_h=4, after_h=4)
    s = build(c, 0)
    assert s.change_ms == T0_MS + 4 * HOUR_MS and s.recover_ms == T0_MS + 8 * HOUR_MS
    arrived = s.label_ms[s.label_ms >= 0]
    assert not np.any((arrived >= s.change_ms) & (arrived < s.recover_ms))
    assert np.any(arrived < s.change_ms) and np.any(arrived >= s.recover_ms)


def test_the_usual_gap_is_the_one_the_track_keeps() -> None:
    c = _case("t", "silence", rate=0.1, of="p99", times=10, n_before=2000, n_after=100)
    s = build(c, 0)
    assert s.change_ms is not None and s.recover_ms is not None
    before = s.ms[s.ms <= s.change_ms]
    usual = usual_gap_ms(before)
    assert s.recover_ms - s.change_ms >= 10 * usual
    track = ModelTrack("m", MonitorConfig(), lag_ms=0)
    for i, t in enumerate(before.tolist()):
        track.see(t, f"{i:06d}", (0, 0.2, "1"))
    track.signals(int(before[-1]) + 1)
    assert track.watch.gaps.quantile(0.99) == usual
    assert isinstance(track.watch.gaps, LogHistogram)


def test_psi_is_near_zero_for_the_same_distribution_and_textbook_for_a_rate_shift() -> None:
    rng = np.random.default_rng(2)
    same = psi_series((rng.random(50_000) < 0.3).astype(float), 2)
    assert len(same) == 49 and same.max() < 0.03
    ref = np.r_[np.zeros(700), np.ones(300)]
    shifted = np.r_[np.zeros(600), np.ones(400)]
    psi = psi_series(np.r_[ref, shifted], 2)
    textbook = 0.1 * math.log(0.4 / 0.3) + 0.1 * math.log(0.7 / 0.6)
    assert psi[0] == pytest.approx(textbook)
    scores = psi_series(rng.random(10_000), 10)
    assert scores.max() < 0.05


def test_the_stream_end_is_not_a_silence_and_every_signal_has_an_emission_time() -> None:
    c = _case("t", "stationary", n=20_000, labels="lognormal")
    run_ = drive(build(c, 0))
    assert not [s for s in run_.signals if s["kind"] == "model_silent"]
    assert all(s["out_ms"] >= s["ms"] for s in run_.signals)


# --- the quick run meets the targets --------------------------------------------------------


def test_the_quick_run_is_quick(quick: dict[str, Any]) -> None:
    assert quick["seconds"] < QUICK_BUDGET_S


def test_every_ten_point_shift_of_the_positive_rate_is_detected(quick: dict[str, Any]) -> None:
    drift = quick["suite"].details["prediction_drift"]
    tens = [e for e in drift if e["case"].startswith("positive rate ")]
    assert len(tens) == 5  # four shifts, and one that goes back
    for e in tens:
        adwin = e["adwin"]
        assert adwin["detected"] == adwin["runs"] == 3, e["case"]
        assert adwin["false_alarms_before_change"] == 0, e["case"]
        assert adwin["max_delay_predictions"] < 5000, e["case"]
    (back,) = [e for e in tens if e["case"].count("->") == 2]
    assert back["adwin"]["resolved"] == 3, back


def test_a_silence_of_ten_usual_gaps_is_flagged_and_resolved(quick: dict[str, Any]) -> None:
    silences = quick["suite"].details["model_silent"]
    assert silences
    for e in silences:
        assert e["detected"] == e["runs"] == e["resolved"], e["case"]
        assert e["false_alarms_before_change"] == 0, e["case"]


def test_labels_that_stop_are_flagged_and_resolved_when_they_come_back(
    quick: dict[str, Any],
) -> None:
    (stop,) = [e for e in quick["suite"].details["labels_missing"] if e["case"] == "labels stop"]
    assert stop["detected"] == stop["runs"] == stop["resolved"] == 1
    assert stop["first_signal"] == {"label_coverage": 1}
    assert stop["mean_delay_min"] < 6 * 60  # a window (1 h) plus the expected delay
    assert stop["false_alarms_before_change"] == 0


@pytest.mark.parametrize("family", [c.name for c in cases(True) if c.kind == "stationary"])
def test_no_false_alarm_on_a_quick_stationary_stream(quick: dict[str, Any], family: str) -> None:
    (entry,) = [e for e in quick["suite"].details["stationary"] if e["case"] == family]
    assert entry["served"] > 30_000
    alarms = {kind: entry[kind]["alarms"] for kind in KINDS}
    assert alarms == dict.fromkeys(KINDS, 0)


def test_the_suite_reports_rows_with_targets(quick: dict[str, Any]) -> None:
    rows = quick["suite"].rows
    targets = [r for r in rows if r.target]
    assert len(targets) >= 10
    assert all(r.met in (True, False) for r in targets)
    assert {f"{k} false alarms per million predictions, stationary" for k in KINDS} <= {
        r.metric for r in rows
    }
    assert "prediction_drift (ADWIN)" in quick["suite"].details["text"]


def test_the_estimate_fires_before_the_labels_on_the_demos_degradations(
    quick: dict[str, Any],
) -> None:
    demo = quick["suite"].details["estimated_on_the_demo"]
    assert [e["model"] for e in demo["degraded"]] == ["fraud-eu", "churn-us", "pricing-apac"]
    for e in demo["degraded"]:
        assert e["estimated_after_h"] is not None and e["label_based_after_h"] is not None, e
        assert e["estimated_after_h"] < e["label_based_after_h"], e
    assert demo["false_alarms"] == []
