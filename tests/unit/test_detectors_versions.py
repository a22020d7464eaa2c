"""Model versions (detectors/versions.py) through the same ModelTrack the engine drives.

A canary (5, 20 or 50 % of the traffic) or a plain switch to a version that errs more
raises ``version_regression`` with both versions' statistics; an equal or better version
raises none; ``version_changed`` marks each new version once; and what is raised, with
its index (so its alert id), does not depend on arrival order, batch cuts or pickling.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from detector_strategies import LAG, SEEDS, T0, slow
from hypothesis import given
from hypothesis import strategies as st

from detectors.base import error_severity
from detectors.config import (
    MonitorConfig,
    VersionRegressionConfig,
    apply_overrides,
    parse_detector_settings,
)
from detectors.exceptions import DetectorSettingsError
from detectors.signal import Signal
from detectors.track import Detection, ModelTrack
from detectors.versions import VersionWatch, regression_z
from streams.contract.alerts import LIFECYCLE_KINDS, build_alert, build_signal_alert

SLOW = slow(6)
CONFIG = MonitorConfig()


@dataclass
class Events:
    predictions: list[tuple[int, str, Any]] = field(default_factory=list)
    outcomes: list[tuple[int, str, float, tuple[str, int]]] = field(default_factory=list)

    @property
    def end(self) -> int:
        return max([p[0] for p in self.predictions] + [o[0] for o in self.outcomes]) + 1


def versioned(
    seed: int,
    *,
    share: float,
    old_rate: float,
    new_rate: float,
    before: int = 3000,
    after: int = 4000,
    stop_old: int | None = None,
) -> Events:
    """Predictions about 2 s apart from v1; after ``before`` of them v2 serves ``share`` of
    the traffic (1.0: a switch). Labels 5 s to a few minutes later; an error with the
    serving version's rate. ``stop_old``: predictions after the switch when v1 stops (a
    canary promoted)."""
    rng = np.random.default_rng(seed)
    events = Events()
    t = T0 + int(rng.integers(0, 3_600_000))
    for k in range(before + after):
        t += int(rng.exponential(2000)) + 1
        new = k >= before and (
            rng.random() < share or (stop_old is not None and k >= before + stop_old)
        )
        version, rate = ("v2", new_rate) if new else ("v1", old_rate)
        key = f"p{k:07d}"
        events.predictions.append((t, key, (1, 0.9, version)))
        delay = 5_000 + int(rng.exponential(20_000))
        events.outcomes.append((t + delay, key, float(rng.random() < rate), (version, t)))
    return events


@dataclass(frozen=True)
class Cadence:
    seed: int
    batches: int
    pickle_every: int = 0


@dataclass
class Run:
    signals: list[Signal]
    detections: list[Detection]
    track: ModelTrack


def drive(config: MonitorConfig, events: Events, cadence: Cadence | None = None) -> Run:
    """Feed ``events`` as the engine does: arrival jittered within the lag, cut in
    batches, the watermarks after each; ``None``: canonical order, one release."""
    track = ModelTrack("m", config, lag_ms=LAG)
    signals: list[Signal] = []
    found: list[Detection] = []
    if cadence is None:
        for p in sorted(events.predictions):
            track.see(*p)
        for o in sorted(events.outcomes):
            track.push(*o)
    else:
        rng = np.random.default_rng(cadence.seed)
        n_p = len(events.predictions)
        items = [(p[0], "p", i) for i, p in enumerate(events.predictions)]
        items += [(o[0], "o", i) for i, o in enumerate(events.outcomes)]
        jitter = rng.integers(0, LAG, len(items))
        order = rng.permutation(len(items))
        arrivals = sorted(
            (t + int(j), int(o), kind, i)
            for (t, kind, i), j, o in zip(items, jitter, order, strict=True)
        )
        cuts = set(rng.integers(1, len(arrivals), cadence.batches).tolist())
        batch = 0
        for k, (at, _, kind, i) in enumerate(arrivals):
            if kind == "p":
                track.see(*events.predictions[i])
            else:
                track.push(*events.outcomes[i])
            if k + 1 not in cuts:
                continue
            bound = at - LAG + 1
            signals += track.signals(bound)
            found += track.release(bound)
            signals += track.finish(bound)
            batch += 1
            if cadence.pickle_every and batch % cadence.pickle_every == 0:
                track = pickle.loads(pickle.dumps(track))
        assert n_p and track.sequencer.late == 0 and track.watch.sequencer.late == 0
    end = events.end + LAG
    signals += track.signals(end)
    found += track.release(end)
    signals += track.finish(end)
    signals += track.flush_signals()
    found += track.flush()
    signals += track.finish(None)
    return Run(signals, found, track)


def of(signals: list[Signal], kind: str) -> list[Signal]:
    return [s for s in signals if s.kind == kind]


def canonical(signals: list[Signal]) -> list[Signal]:
    return sorted(signals, key=lambda s: (s.event_time_ms, s.kind, s.index, s.signal, s.status))


def by_index(found: list[Detection]) -> list[Detection]:
    """Detections in outcome order (escalations are listed after a batch's changes)."""
    return sorted(found, key=lambda d: (d.change.index, d.change.detector))


def near(side: dict[str, Any], rate: float) -> bool:
    """A rate over ``side["count"]`` outcomes within 3.5 standard errors of ``rate``."""
    n = side["count"]
    return n > 0 and abs(side["error_rate"] - rate) <= 3.5 * (rate * (1 - rate) / n) ** 0.5


# --- regressions ------------------------------------------------------------------------


@SLOW
@given(SEEDS, st.sampled_from([0.05, 0.2, 0.5]))
def test_a_canary_ten_points_worse_raises_a_regression_with_both_versions(
    seed: int, share: float
) -> None:
    after = {0.05: 8000, 0.2: 3000, 0.5: 2000}[share]
    events = versioned(seed, share=share, old_rate=0.10, new_rate=0.20, after=after)
    run = drive(CONFIG, events)
    (changed,) = of(run.signals, "version_changed")
    assert changed.before == {"model_version": "v1"} and changed.after == {"model_version": "v2"}
    assert changed.severity == "info"
    (regression,) = of(run.signals, "version_regression")
    assert regression.before["model_version"] == "v1"
    assert regression.after["model_version"] == "v2"
    assert regression.after["compared"] == "concurrent"
    assert near(regression.before, 0.10) and near(regression.after, 0.20)
    assert regression.before["count"] >= 200 and regression.after["count"] >= 200
    assert regression.after["z"] >= regression.after["threshold"] == 3.0
    assert regression.severity == error_severity(
        regression.before["error_rate"], regression.after["error_rate"]
    )  # critical from +10 points measured, as for performance_degradation
    assert "roll back to v1?" in regression.message
    # raised soon: at one of the first looks at the new version's outcomes
    assert regression.after["count"] <= 800


@SLOW
@given(SEEDS, st.sampled_from([0.05, 0.2, 0.5, 1.0]), st.sampled_from([0.10, 0.06, 0.02]))
def test_an_equal_or_better_version_raises_no_regression(
    seed: int, share: float, new_rate: float
) -> None:
    events = versioned(seed, share=share, old_rate=0.10, new_rate=new_rate, after=5000)
    run = drive(CONFIG, events)
    assert of(run.signals, "version_regression") == []
    assert len(of(run.signals, "version_changed")) == 1
    assert run.track.watch.versions.pair is not None  # it was compared


@SLOW
@given(SEEDS)
def test_a_switch_to_a_worse_version_is_compared_before_and_after(seed: int) -> None:
    events = versioned(seed, share=1.0, old_rate=0.05, new_rate=0.12, after=2000)
    run = drive(CONFIG, events)
    (regression,) = of(run.signals, "version_regression")
    assert regression.after["compared"] == "before_after"
    assert regression.before["count"] >= 1000  # the old version's last ~1,000
    assert near(regression.before, 0.05) and near(regression.after, 0.12)
    assert regression.severity == error_severity(
        regression.before["error_rate"], regression.after["error_rate"]
    )


def test_a_promoted_canary_compares_only_the_period_both_served() -> None:
    # v2 serves 20 % for 1,500 predictions, then everything: only the overlap counts
    events = versioned(7, share=0.2, old_rate=0.10, new_rate=0.30, after=6000, stop_old=1500)
    (regression,) = of(drive(CONFIG, events).signals, "version_regression")
    assert regression.after["compared"] == "concurrent"
    assert regression.after["count"] <= 320  # about 20 % of 1,500: no outcome of v2 alone


def test_the_min_effect_holds_back_a_significant_but_small_rise() -> None:
    events = versioned(3, share=1.0, old_rate=0.10, new_rate=0.115, before=20000, after=20000)
    loose = replace(
        CONFIG,
        version_regression=VersionRegressionConfig(
            window=20000, z=2.0, min_effect=0.01, min_ratio=1.1
        ),
    )
    strict = replace(
        loose, version_regression=replace(loose.version_regression, min_effect=0.02, min_ratio=1.25)
    )
    assert of(drive(loose, events).signals, "version_regression")
    assert of(drive(strict, events).signals, "version_regression") == []


def test_regression_errors_are_compared_with_welch() -> None:
    rng = np.random.default_rng(5)
    track = ModelTrack("m", CONFIG, lag_ms=0)
    t = T0
    for k in range(3000):
        t += 1000
        version = "v1" if k < 1500 else "v2"
        error = abs(rng.normal(0, 1.0 if version == "v1" else 1.6))
        track.push(t, f"p{k:06d}", error, (version, t))
    track.flush()
    (regression,) = of(track.finish(None), "version_regression")
    assert "error_mean" in regression.after and regression.after["compared"] == "before_after"
    assert regression_z((100, 50.0, 40.0), (100, 50.0, 40.0), False) == 0.0


def test_disabled_says_nothing() -> None:
    off = replace(CONFIG, version_regression=VersionRegressionConfig(enabled=False))
    events = versioned(1, share=0.5, old_rate=0.05, new_rate=0.5, after=2000)
    assert [s for s in drive(off, events).signals if s.kind in LIFECYCLE_KINDS] == []


# --- version_changed and the per-version statistics -----------------------------------------


def test_version_changed_once_per_new_version_and_not_for_the_first() -> None:
    watch = VersionWatch(VersionRegressionConfig(max_versions=2))
    said = [watch.served(i, T0 + i, v) for i, v in enumerate(["a", "a", "b", "a", "b", "c", None])]
    named = [(s.index, s.before, s.after) for s in said if s is not None]
    assert named == [(2, {"model_version": "a"}, {"model_version": "b"}),
                     (5, {"model_version": "b"}, {"model_version": "c"})]  # fmt: skip
    for i, v in enumerate(["a", "b", "c", "d", "e"]):
        watch.outcome(i, T0 + i, T0 + i, v, 0.0)
    assert list(watch.stats) == ["d", "e"] and watch.evicted == 3  # bounded


def test_per_version_statistics_are_kept_next_to_the_models() -> None:
    events = versioned(2, share=0.5, old_rate=0.10, new_rate=0.10, after=2000)
    track = drive(CONFIG, events).track
    stats = track.watch.versions.stats
    assert set(stats) == {"v1", "v2"}
    assert stats["v1"][0] + stats["v2"][0] == track.monitor.n == 5000


# --- determinism, pickling -------------------------------------------------------------------


@SLOW
@given(SEEDS, st.sampled_from([0.05, 0.5, 1.0]), st.lists(SEEDS, min_size=3, max_size=3))
def test_version_signals_do_not_depend_on_arrival_order_or_batch_cuts(
    seed: int, share: float, cadence_seeds: list[int]
) -> None:
    after = 8000 if share == 0.05 else 3000  # at least 200 outcomes of v2
    events = versioned(seed, share=share, old_rate=0.08, new_rate=0.25, after=after)
    reference = drive(CONFIG, events)
    assert of(reference.signals, "version_regression") and of(reference.signals, "version_changed")
    for cadence in (
        Cadence(cadence_seeds[0], batches=3000),
        Cadence(cadence_seeds[1], batches=40),
        Cadence(cadence_seeds[2], batches=8, pickle_every=1),
    ):
        got = drive(CONFIG, events, cadence)
        assert canonical(got.signals) == canonical(reference.signals), cadence
        assert by_index(got.detections) == by_index(reference.detections), cadence


def test_a_track_pickled_before_versions_existed_loads_and_goes_on() -> None:
    events = versioned(4, share=1.0, old_rate=0.05, new_rate=0.05, before=500, after=0)
    track = drive(CONFIG, events).track
    state = pickle.loads(pickle.dumps(track)).__getstate__()
    del state["lifecycle"]
    del state["watch"].__dict__["versions"]
    old = object.__new__(ModelTrack)
    old.__setstate__(state)
    assert old.watch.versions is not None and old.watch.versions.known == ["v1"]
    t = events.end + 1000
    old.see(t, "z1", (1, 0.9, "v2"))
    changed = old.signals(t + 1)
    assert [s.kind for s in of(changed, "version_changed")] == ["version_changed"]  # v2 is new
    assert pickle.loads(pickle.dumps(old)).watch.versions.known == ["v1", "v2"]


# --- a degradation that comes with a new version names both ---------------------------------


def test_a_degradation_after_a_version_switch_names_both_versions() -> None:
    events = versioned(9, share=1.0, old_rate=0.05, new_rate=0.30, after=2000)
    run = drive(CONFIG, events)
    rises = [d for d in run.detections if d.change.direction == "increase"]
    assert rises and all(d.versions is not None for d in rises)
    d = rises[0]
    assert d.versions is not None and (d.versions["before"], d.versions["after"]) == ("v1", "v2")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    named = build_alert(d.change, model_id="m", model_version="v2", detected_at=at,
                        config_fingerprint="f", versions=d.versions)  # fmt: skip
    plain = build_alert(d.change, model_id="m", model_version="v2", detected_at=at,
                        config_fingerprint="f")  # fmt: skip
    assert named["alert_id"] == plain["alert_id"]  # the id does not change
    assert named["versions"]["before"] == "v1" and named["versions"]["changed_at"].endswith("Z")
    assert "v1" in named["message"] and "v2" in named["message"]
    assert "versions" not in plain


def test_a_degradation_without_a_version_change_names_none() -> None:
    rng = np.random.default_rng(11)
    track = ModelTrack("m", CONFIG, lag_ms=0)
    t = T0
    for k in range(4000):
        t += 1000
        track.push(t, f"p{k:06d}", float(rng.random() < (0.05 if k < 2000 else 0.3)), ("v1", t))
    rises = [d for d in track.flush() if d.change.direction == "increase"]
    assert rises and all(d.versions is None for d in rises)


def test_lifecycle_signals_build_alerts_with_their_kind() -> None:
    events = versioned(1, share=0.5, old_rate=0.05, new_rate=0.30, after=2000)
    run = drive(CONFIG, events)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for s in run.signals:
        if s.kind in LIFECYCLE_KINDS:
            alert = build_signal_alert(
                s, model_id="m", model_version="v2", detected_at=at, config_fingerprint="f"
            )
            assert alert["kind"] == s.kind and alert["message"] == s.message
    kinds = {s.kind for s in run.signals}
    assert set(LIFECYCLE_KINDS) <= kinds


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"z": 0}, "defaults.version_regression.z"),
        ({"min_outcomes": 5}, "defaults.version_regression.min_outcomes"),
        ({"window": 100}, "defaults.version_regression.window"),
        ({"min_ratio": 0.5}, "defaults.version_regression.min_ratio"),
        ({"max_versions": 1}, "defaults.version_regression.max_versions"),
        ({"nope": 1}, "defaults.version_regression.nope"),
    ],
)
def test_bad_settings_name_their_dotted_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(DetectorSettingsError) as error:
        parse_detector_settings({"defaults": {"version_regression": section}})
    assert error.value.key == key


def test_settings_override_and_change_the_fingerprint() -> None:
    settings_ = parse_detector_settings({"models": {"m": {"version_regression": {"z": 4.0}}}})
    assert settings_.for_model("m").version_regression.z == 4.0
    assert settings_.for_model("m").fingerprint() != MonitorConfig().fingerprint()
    over = apply_overrides(settings_, {"version_regression.min_outcomes": "300"})
    assert over.for_model("m").version_regression.min_outcomes == 300
