"""Quality of the input signals (detectors.features): detection, delay, false alarms.

Seeded streams of prediction-event features run through :class:`~detectors.features.FeatureWatch`
with the default settings, in batches of 500 events as the detect step feeds it:

- a numeric feature's mean shifts by 0.5, 1 or 2 standard deviations after 3,000 stable
  events (next to three stable features): detected or not, and after how many events
  (the ``confirm`` events that measure the new level included);
- the share of unseen categories of a categorical feature goes from 0 to 5 % or 20 %;
- a key is renamed upstream: one ``schema_change`` naming both keys, and how late;
- stable streams (5 numeric, 3 categorical, 1 boolean feature, 1 % of events with a key
  missing, a stray key or a value of another type): false alarms per million events.

    python -m bench.quality_features [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors.config import FeatureDriftConfig, SchemaChangeConfig
from detectors.features import FeatureRow, FeatureWatch
from detectors.signal import Signal

from .report import Row, Suite, markdown

T0_MS = 1_795_255_200_000
STABLE_BEFORE = 3_000  # events before a change
AFTER = 4_000  # events after it
BATCH = 500
COUNTRIES = ("nl", "de", "fr", "be", "es", "it", "pl", "se")

Maker = Callable[[np.random.Generator, int], dict[str, Any] | None]


def _run(make: Maker, n: int, seed: int) -> list[Signal]:
    rng = np.random.default_rng(seed)
    watch = FeatureWatch(FeatureDriftConfig(), SchemaChangeConfig())
    out: list[Signal] = []
    rows: list[FeatureRow] = []
    for k in range(n):
        rows.append((k + 1, T0_MS + 1000 * k, make(rng, k)))
        if len(rows) == BATCH:
            out += watch.feed(rows)
            rows = []
    return out + watch.feed(rows)


def _base(rng: np.random.Generator, k: int) -> dict[str, Any]:
    return {
        "amount": float(rng.normal(50.0, 8.0)),
        "age": int(rng.integers(18, 90)),
        "country": COUNTRIES[int(rng.integers(len(COUNTRIES)))],
        "vip": bool(rng.random() < 0.1),
    }


def _shift(sd: float) -> Maker:
    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        f = _base(rng, k)
        f["x"] = float(rng.normal(sd if k >= STABLE_BEFORE else 0.0, 1.0))
        return f

    return make


def _unseen(share: float) -> Maker:
    def make(rng: np.random.Generator, k: int) -> dict[str, Any]:
        f = _base(rng, k)
        if k >= STABLE_BEFORE and rng.random() < share:
            f["country"] = f"new-{int(rng.integers(10**6))}"
        return f

    return make


def _rename(rng: np.random.Generator, k: int) -> dict[str, Any]:
    f = _base(rng, k)
    if k >= STABLE_BEFORE:
        f["amount_eur"] = f.pop("amount")
    return f


def _stable(rng: np.random.Generator, k: int) -> dict[str, Any] | None:
    f = _base(rng, k)
    f["score_a"] = float(rng.gamma(2.0, 3.0))  # skewed
    f["clicks"] = int(rng.poisson(3.0))  # discrete
    f["ratio"] = float(rng.beta(2.0, 5.0))
    f["device"] = ("ios", "android", "web")[int(rng.integers(3))]
    f["plan"] = ("free", "pro", "team", "enterprise")[min(int(rng.exponential(0.8)), 3)]
    odd = rng.random()
    if odd < 0.0025:
        f.pop("amount")
    elif odd < 0.005:
        f["debug"] = 1
    elif odd < 0.0075:
        f["age"] = "unknown"
    elif odd < 0.01:
        return None
    return f


def _detected(signals: list[Signal], kind: str, signal: str | None) -> tuple[Signal | None, int]:
    """(the first alert of ``kind`` about ``signal`` after the change, alerts before it)."""
    mine = [s for s in signals if s.kind == kind and (signal is None or s.signal == signal)]
    early = sum(s.index <= STABLE_BEFORE for s in mine)
    late = [s for s in mine if s.index > STABLE_BEFORE]
    return (late[0] if late else None), early


def _scenario(name: str, make: Maker, kind: str, signal: str | None, seeds: int) -> dict[str, Any]:
    found = delays = early = 0
    delay_list: list[int] = []
    severities: list[str] = []
    others = 0
    for seed in range(seeds):
        signals = _run(make, STABLE_BEFORE + AFTER, 1000 + seed)
        first, before = _detected(signals, kind, signal)
        early += before
        others += sum(
            1 for s in signals if not (s.kind == kind and (signal is None or s.signal == signal))
        )
        if first is not None:
            found += 1
            # events until the alert goes out: its time (events are 1 s apart)
            delay_list.append((first.event_time_ms - T0_MS) // 1000 + 1 - STABLE_BEFORE)
            severities.append(first.severity)
    delays = int(statistics.median(delay_list)) if delay_list else -1
    return {
        "name": name,
        "detected": found,
        "runs": seeds,
        "median_delay": delays,
        "delay_range": [min(delay_list), max(delay_list)] if delay_list else None,
        "severities": {s: severities.count(s) for s in sorted(set(severities))},
        "before_change": early,
        "other_alerts": others,
    }


def run(quick: bool = False) -> Suite:
    seeds = 5 if quick else 20
    stable_streams, stable_events = (2, 50_000) if quick else (5, 200_000)
    began = time.monotonic()
    scenarios = [
        _scenario("number +0.5 sd", _shift(0.5), "feature_drift", "x", seeds),
        _scenario("number +1 sd", _shift(1.0), "feature_drift", "x", seeds),
        _scenario("number +2 sd", _shift(2.0), "feature_drift", "x", seeds),
        _scenario("unseen categories 0 -> 5 %", _unseen(0.05), "feature_drift", "country", seeds),
        _scenario("unseen categories 0 -> 20 %", _unseen(0.2), "feature_drift", "country", seeds),
        _scenario("key renamed upstream", _rename, "schema_change", None, seeds),
    ]
    false: dict[str, int] = {"feature_drift": 0, "schema_change": 0}
    for seed in range(stable_streams):
        for s in _run(_stable, stable_events, 5000 + seed):
            false[s.kind] += 1
    events = stable_streams * stable_events
    per_million = {k: v * 1e6 / events for k, v in false.items()}
    suite = Suite("Input signals: feature_drift and schema_change")
    for sc in scenarios:
        rate = sc["detected"] / sc["runs"]
        suite.rows.append(
            Row(
                f"{sc['name']}: detected (median delay {sc['median_delay']} events)",
                rate,
                "share",
                target="1.0" if "0.5 sd" not in sc["name"] and "5 %" not in sc["name"] else "",
                met=None if "0.5 sd" in sc["name"] or "5 %" in sc["name"] else rate == 1.0,
            )
        )
    for kind, value in per_million.items():
        suite.rows.append(
            Row(f"{kind} false alarms per million stable events", value, "/M", target="< 1",
                met=value < 1.0)
        )  # fmt: skip
    suite.details = {
        "scenarios": scenarios,
        "stable": {"streams": stable_streams, "events": events, "false_alarms": false},
        "seconds": round(time.monotonic() - began, 1),
    }
    suite.notes = [
        f"{seeds} seeded runs per scenario, change after {STABLE_BEFORE:,} events; delays in "
        "events from the change until the alert goes out (a drift: the 400 events that "
        "measure the new level included; a schema change: one or two windows of 500)",
        f"stable: {stable_streams} streams of {stable_events:,} events, 9 features each "
        "(normal, gamma, Poisson, beta, integer, 3 categorical, 1 boolean), 1 % odd events",
    ]
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    suite = run(args.quick)
    print(markdown([suite.as_dict()]))
    import json

    print(json.dumps(suite.details, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
