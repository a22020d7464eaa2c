"""Input signals of one model (detectors.features, through SignalWatch and ModelTrack).

``feature_drift`` must catch a feature that moves (a number by one standard deviation, a
category stream whose unseen share goes from 0 to 20 %) and stay quiet on stable ones;
``schema_change`` must turn an upstream rename into one alert naming both keys, and never
fire on one odd event. As for every signal, the decisions are a property of the events:
the same events in any arrival order, cut into any batches, pickled in between, give the
same signals (``drive`` from test_detectors_signals plays the engine).
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_detectors_signals import SEEDS, SLOW, T0, Cadence, Events, canonical, drive, live, of

from detectors.config import (
    FeatureDriftConfig,
    MonitorConfig,
    SchemaChangeConfig,
    parse_detector_settings,
)
from detectors.features import FeatureWatch
from detectors.signals import SignalWatch
from detectors.track import ModelTrack

CONFIG = MonitorConfig(task="classification")


def stream(
    seed: int,
    n: int,
    make: Any,
    *,
    gap_ms: int = 1000,
) -> Events:
    """``n`` predictions ``gap_ms`` apart; ``make(rng, k)`` gives the features of the k-th
    (None: an event without features)."""
    rng = np.random.default_rng(seed)
    events = Events()
    t = T0
    for k in range(n):
        t += gap_ms
        key = f"p{k:07d}"
        features = make(rng, k)
        payload = (1, 0.5, "v1") if features is None else (1, 0.5, "v1", features)
        events.predictions.append((t, key, payload))
    return events


def numeric(shift_at: int | None, sd: float = 1.0) -> Any:
    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        moved = shift_at is not None and k >= shift_at
        return {
            "amount": float(rng.normal(50.0 + (sd * 8.0 if moved else 0.0), 8.0)),
            "country": ("nl", "de", "fr", "be")[int(rng.integers(4))],
            "age": int(rng.integers(18, 90)),
            "vip": bool(rng.random() < 0.1),
        }

    return make


def drifts(signals: list[Any]) -> list[Any]:
    return of(signals, "feature_drift")


# --- feature_drift --------------------------------------------------------------------------


@settings(SLOW, max_examples=10)
@given(SEEDS, st.integers(1000, 6000))
def test_a_one_sd_mean_shift_of_a_number_is_caught_after_it(seed: int, stable: int) -> None:
    events = stream(seed, stable + 3000, numeric(stable))
    found = drifts(live(CONFIG, events, seed).signals)
    assert found, "a one-sd shift went unnoticed"
    assert {s.signal for s in found} == {"amount"}, "only the feature that moved"
    first = found[0]
    assert first.index > stable and first.event_time_ms >= events.predictions[stable][0]
    assert first.direction == "increase" and first.severity == "warning"
    assert 0.7 <= first.after["shift_sd"] <= 1.3, first
    assert abs(first.after["mean"] - 58.0) < 2.0 and abs(first.before["mean"] - 50.0) < 2.0
    assert "'amount'" in first.message


@settings(SLOW, max_examples=6)
@given(SEEDS)
def test_stable_features_stay_quiet(seed: int) -> None:
    events = stream(seed, 20_000, numeric(None))
    signals = live(CONFIG, events, seed, per_batch=500).signals
    assert drifts(signals) == [] and of(signals, "schema_change") == []


def test_a_creeping_drift_of_small_steps_is_reported_once_it_is_far_from_the_reference() -> None:
    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        step = max(0, (k - 2000) // 2500)  # +0.3 sd every 2,500 events from event 2,000
        return {"amount": float(rng.normal(50.0 + 8.0 * 0.3 * step, 8.0))}

    found = drifts(live(CONFIG, stream(9, 2000 + 2500 * 5, make), 9).signals)
    assert found, "a drift of 1.5 sd in steps of 0.3 went unnoticed"
    assert all(abs(s.after["shift_sd"]) < 0.5 for s in found)  # no step was large ...
    assert max(s.after["from_reference_sd"] for s in found) >= 0.5  # ... the sum was
    ranks = [s.severity for s in found]
    assert ranks == sorted(set(ranks), key=["warning", "critical"].index), ranks


def categories(change_at: int, unseen: float) -> Any:
    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        if k >= change_at and rng.random() < unseen:
            return {"device": f"new-{int(rng.integers(1_000_000))}"}
        return {"device": ("ios", "android", "web", "tv", "car")[int(rng.integers(5))]}

    return make


@settings(SLOW, max_examples=10)
@given(SEEDS, st.integers(1000, 5000))
def test_a_rise_of_unseen_categories_from_0_to_20_percent_is_caught(
    seed: int, change_at: int
) -> None:
    events = stream(seed, change_at + 3000, categories(change_at, 0.2))
    found = drifts(live(CONFIG, events, seed).signals)
    assert found and {s.signal for s in found} == {"device"}
    first = found[0]
    assert first.index > change_at and first.direction == "increase"
    # "before" leaves out the latest 1,024 values; with fewer since the warm-up it holds
    # some of the new level (as for prediction_drift)
    assert first.before["unseen_rate"] < 0.1 and 0.14 <= first.after["unseen_rate"] <= 0.26
    assert first.severity in ("warning", "critical")


def test_a_stable_share_of_unseen_categories_is_no_drift() -> None:
    # an id-like feature: every value is new, always
    events = stream(1, 8000, lambda rng, k: {"session": f"s{k}"})
    assert drifts(live(CONFIG, events, 1).signals) == []


def test_values_of_features_beyond_the_cap_are_counted_not_watched() -> None:
    config = replace(CONFIG, feature_drift=FeatureDriftConfig(max_features=2))
    events = stream(2, 3000, numeric(1500, sd=3.0))
    run = drive(config, events, None)
    inputs = run.track.watch.inputs
    assert inputs is not None
    assert list(inputs.features) == ["amount", "country"]  # the first seen, in order
    assert inputs.features_dropped == 2 * 3000  # age and vip in every event
    assert {s.signal for s in drifts(run.signals)} == {"amount"}


def test_drift_and_schema_can_be_turned_off() -> None:
    events = stream(3, 4000, numeric(2000, sd=3.0))
    off = replace(
        CONFIG,
        feature_drift=FeatureDriftConfig(enabled=False),
        schema_change=SchemaChangeConfig(enabled=False),
    )
    run = drive(off, events, None)
    assert drifts(run.signals) == [] and run.track.watch.inputs is None
    assert drifts(drive(CONFIG, events, None).signals)


# --- schema_change --------------------------------------------------------------------------


def renamed(at: int) -> Any:
    base = numeric(None)

    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        features = base(rng, k)
        if k >= at:
            features["amount_eur"] = features.pop("amount")
        return features

    return make


@settings(SLOW, max_examples=12)
@given(SEEDS, st.integers(600, 4000))
def test_an_upstream_rename_is_one_schema_change_naming_both_keys(seed: int, at: int) -> None:
    events = stream(seed, at + 2500, renamed(at))
    changes = of(live(CONFIG, events, seed).signals, "schema_change")
    assert len(changes) == 1, changes
    (change,) = changes
    assert change.after["removed"] == ["amount"] and change.after["added"] == ["amount_eur"]
    assert change.after["retyped"] == {} and change.severity == "critical"
    assert change.index > at and "'amount'" in change.message and "'amount_eur'" in change.message


def test_a_value_that_changes_type_is_a_schema_change() -> None:
    base = numeric(None)

    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        features = base(rng, k)
        if k >= 2000:
            features["age"] = str(features["age"])  # upstream now sends text
        return features

    (change,) = of(live(CONFIG, stream(4, 4000, make), 4).signals, "schema_change")
    assert change.after["retyped"] == {"age": "number -> string"}
    assert change.after["added"] == change.after["removed"] == []
    assert "'age' is now a string (was a number)" in change.message


def test_a_new_key_alone_warns_and_one_odd_event_is_no_alert() -> None:
    base = numeric(None)

    def make(rng: np.random.Generator, k: int) -> dict[str, Any] | None:
        features = base(rng, k)
        if k % 97 == 5:  # odd events: a key missing, a stray key, a wrong type, none at all
            features.pop("amount")
        if k % 89 == 7:
            features["debug"] = 1
        if k % 83 == 3:
            features["age"] = "unknown"
        if k % 101 == 9:
            return None
        if k >= 3000:
            features["channel"] = "web"
        return features

    changes = of(live(CONFIG, stream(5, 5000, make), 5).signals, "schema_change")
    assert [(c.after["added"], c.after["removed"], c.severity) for c in changes] == [
        (["channel"], [], "warning")
    ]


def test_features_that_stop_coming_are_removed_keys() -> None:
    events = stream(6, 3000, lambda rng, k: numeric(None)(rng, k) if k < 1500 else None)
    (change,) = of(live(CONFIG, events, 6).signals, "schema_change")
    assert change.after["removed"] == ["age", "amount", "country", "vip"]


# --- determinism and state -------------------------------------------------------------------


def eventful(seed: int) -> Events:
    """A feature shift, a rename, a retyped key and a new category mix, in one stream."""
    rng0 = np.random.default_rng(seed)
    shift_at, rename_at, retype_at = (int(x) for x in rng0.integers(800, 3500, 3))
    base = numeric(shift_at, sd=2.0)

    def make(rng: np.random.Generator, k: int) -> dict[str, Any] | None:
        if rng.random() < 0.02:
            return None
        features = base(rng, k)
        if k >= rename_at:
            features["nation"] = features.pop("country")
        if k >= retype_at:
            features["vip"] = "yes" if features["vip"] else "no"
        return features

    return stream(seed, 5000, make, gap_ms=int(rng0.integers(500, 3000)))


@SLOW
@given(SEEDS, st.lists(SEEDS, min_size=3, max_size=3))
def test_input_signals_do_not_depend_on_arrival_order_batches_or_pickling(
    seed: int, cadence_seeds: list[int]
) -> None:
    events = eventful(seed)
    reference = drive(CONFIG, events, None).signals
    kinds = {s.kind for s in reference}
    assert {"feature_drift", "schema_change"} <= kinds, kinds
    for cadence in (
        Cadence(cadence_seeds[0], batches=3000),
        Cadence(cadence_seeds[1], batches=40, ticks=200, trail=300_000),
        Cadence(cadence_seeds[2], batches=5, ticks=10, trail=3_600_000, pickle_every=1),
    ):
        got = drive(CONFIG, events, cadence).signals
        assert canonical(got) == canonical(reference), cadence


def test_a_watch_pickled_before_features_existed_starts_one_on_the_first_features() -> None:
    watch = SignalWatch("m", CONFIG, lag_ms=0)
    watch.push(T0, "a", (1, 0.5, "v1"))
    watch.release(T0 + 1)
    state = dict(watch.__dict__)
    state.pop("inputs", None)
    old = object.__new__(SignalWatch)
    old.__dict__.update(pickle.loads(pickle.dumps(state)))
    assert old.inputs is None
    old.push(T0 + 10, "b", (1, 0.5, "v1", {"x": 1.0}))
    old.release(T0 + 11)
    assert old.inputs is not None and list(old.inputs.features) == ["x"]


def test_an_old_track_pickle_reads_back_and_takes_features() -> None:
    track = ModelTrack("m", CONFIG, lag_ms=0)
    track.see(T0, "a", (1, 0.5, "v1"))
    track.signals(T0 + 1)
    blob = pickle.dumps(track)
    assert b"inputs" not in blob  # nothing of the feature watch until features come
    again: ModelTrack = pickle.loads(blob)
    again.see(T0 + 5, "b", (1, 0.5, "v1", {"x": "a"}))
    assert again.signals(T0 + 6) == [] and again.watch.inputs is not None


def test_a_feature_watch_round_trips_through_pickle_mid_warmup_and_after() -> None:
    events = stream(8, 4000, numeric(2500, sd=2.0))
    rows = [(i + 1, te, p[3]) for i, (te, _, p) in enumerate(events.predictions)]
    straight = FeatureWatch(FeatureDriftConfig(), SchemaChangeConfig())
    expected = straight.feed(rows)
    pickled = FeatureWatch(FeatureDriftConfig(), SchemaChangeConfig())
    got = []
    for lo in range(0, len(rows), 333):
        got += pickled.feed(rows[lo : lo + 333])
        pickled = pickle.loads(pickle.dumps(pickled))
    assert got == expected and drifts(expected)


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"feature_drift": {"delta": 0}}, "defaults.feature_drift.delta"),
        ({"feature_drift": {"warning_std": 3, "critical_std": 2}}, "feature_drift.critical_std"),
        ({"feature_drift": {"max_features": -1}}, "defaults.feature_drift.max_features"),
        ({"feature_drift": {"warmup": "500"}}, "defaults.feature_drift.warmup"),
        ({"schema_change": {"share": 1.0}}, "defaults.schema_change.share"),
        ({"schema_change": {"min_presence": 0.4}}, "defaults.schema_change.min_presence"),
        ({"schema_change": {"windw": 5}}, "defaults.schema_change.windw"),
    ],
)
def test_bad_feature_settings_name_their_dotted_key(section: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace(".", r"\.")):
        parse_detector_settings({"defaults": section})


def test_feature_settings_change_the_fingerprint_and_apply_per_model() -> None:
    settings_ = parse_detector_settings(
        {
            "models": {
                "fraud": {"feature_drift": {"max_features": 5}, "schema_change": {"window": 50}}
            }
        }
    )
    fraud = settings_.for_model("fraud")
    assert fraud.feature_drift.max_features == 5 and fraud.schema_change.window == 50
    assert fraud.feature_drift.delta == FeatureDriftConfig().delta  # the rest from defaults
    assert fraud.fingerprint() != settings_.defaults.fingerprint()


def test_absurd_numbers_neither_crash_nor_poison_a_feature() -> None:
    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        extreme = (1e308, -1e308, 2**63, 0.0)[k % 4] if k % 50 == 0 else None
        return {"x": extreme if extreme is not None else float(rng.normal(0.0, 1.0))}

    events = stream(10, 6000, make)
    run = drive(CONFIG, events, None)
    feature = run.track.watch.inputs.features["x"]  # type: ignore[union-attr]
    assert all(np.isfinite([feature.mean, feature.scale, feature.squares]))
    assert all(np.isfinite(s.after["mean"]) for s in drifts(run.signals))


def test_junk_keys_beyond_the_cap_are_counted_and_crowd_out_no_known_key() -> None:
    config = replace(CONFIG, schema_change=SchemaChangeConfig(max_keys=8))

    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        junk = {f"junk-{int(rng.integers(10**6))}": 1 for _ in range(4)}  # never the same
        return {**junk, **numeric(None)(rng, k)}  # the real keys come last

    run = drive(config, stream(11, 3000, make), None)
    assert of(run.signals, "schema_change") == []
    inputs = run.track.watch.inputs
    assert inputs is not None and inputs.keys_dropped > 3000
