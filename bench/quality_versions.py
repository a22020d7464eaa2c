"""Detection quality of ``version_regression``: seeded streams, known version changes.

Every stream goes through :class:`~detectors.track.ModelTrack`, as the detect step drives
it: predictions (about one a second, Poisson) are ``see``-n at their time, outcomes
``push``-ed when their label arrives (log-normal delay, median 10 min), and a batch ends
every 500 arrivals with both watermarks at ``its last arrival - lag``.

A model serves ``v1`` (error rate 10 %) for 5,000 predictions, then ``v2`` takes a share
of the traffic: 5, 20 or 50 % (a canary, compared on the period both serve) or 100 %
(a switch, compared before and after), with an error rate of

- 20 % (+10 points) and 15 % (+5 points): regressions, to detect (rate, and the delay
  from ``v2``'s first prediction to the alert's event time, and ``v2``'s outcomes in it);
- 10 % (equal) and 6 % (better): controls, where any ``version_regression`` is a false
  alarm, counted per version change and per million outcomes;

plus stable streams that never change version (no lifecycle alert at all expected).
A regression of +10 points that pages (``warning`` or ``critical``) counts as detected.
It also counts how many ``performance_degradation`` alerts after a switch name both
versions.

    python -m bench.quality_versions [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.report import Row, Suite, markdown
from detectors.config import MonitorConfig
from detectors.track import ModelTrack

__all__ = ["Outcome", "build", "drive", "run"]

T0_MS = 1_790_000_000_000
LAG_MS = 60_000
BATCH = 500
OLD_RATE = 0.10
BEFORE = 5000
SHARES = (0.05, 0.2, 0.5, 1.0)
RATES = {"+10 points": 0.20, "+5 points": 0.15, "equal": 0.10, "better": 0.06}
V2_OUTCOMES = 4000  # predictions after the switch: enough for v2 to reach the last look


@dataclass
class Outcome:
    """What one stream raised."""

    regressions: list[dict[str, Any]]
    changed: int
    outcomes: int
    switch_ms: int | None
    degradations: int
    named: int


def build(
    seed: int,
    share: float,
    new_rate: float,
    *,
    before: int = BEFORE,
    after: int | None = None,
    served: int = V2_OUTCOMES,
) -> tuple[list[tuple[int, int, tuple[Any, ...]]], int | None]:
    """Arrivals ``(time, order, event)``: ``("p", te, key, payload)`` for a prediction,
    ``("o", completed, key, error, (version, te))`` for an outcome; and the switch time."""
    rng = np.random.default_rng(seed)
    if after is None:
        after = math.ceil(served / share) if share > 0 else 0
    n = before + after
    times = T0_MS + np.cumsum(rng.exponential(1000.0, n).astype(np.int64) + 1)
    delays = (rng.lognormal(math.log(600_000), 0.8, n)).astype(np.int64) + 1000
    draws = rng.random(n)
    picks = rng.random(n)
    arrivals: list[tuple[int, int, tuple[Any, ...]]] = []
    switch_ms: int | None = None
    for k in range(n):
        te = int(times[k])
        new = k >= before and share > 0 and picks[k] < share
        version, rate = ("v2", new_rate) if new else ("v1", OLD_RATE)
        if new and switch_ms is None:
            switch_ms = te
        key = f"p{k:07d}"
        arrivals.append((te, 2 * k, ("p", te, key, (1, 0.9, version))))
        done = te + int(delays[k])
        error = float(draws[k] < rate)
        arrivals.append((done, 2 * k + 1, ("o", done, key, error, (version, te))))
    arrivals.sort()
    return arrivals, switch_ms


def drive(
    arrivals: Iterable[tuple[int, int, tuple[Any, ...]]],
    switch_ms: int | None,
    config: MonitorConfig | None = None,
) -> Outcome:
    """Run one stream through a :class:`ModelTrack` in batches, as the detect step does."""
    track = ModelTrack("m", config or MonitorConfig(), lag_ms=LAG_MS)
    signals: list[Any] = []
    found: list[Any] = []
    outcomes = 0
    for i, (at, _, event) in enumerate(arrivals, 1):
        if event[0] == "p":
            track.see(event[1], event[2], event[3])
        else:
            track.push(event[1], event[2], event[3], event[4])
            outcomes += 1
        if i % BATCH == 0:
            bound = at - LAG_MS
            signals += track.signals(bound)
            found += track.release(bound)
            signals += track.finish(bound)
    signals += track.flush_signals()
    found += track.flush()
    signals += track.finish(None)
    regressions = [
        {"severity": s.severity, "at_ms": s.event_time_ms, **s.after, "before": s.before}
        for s in signals
        if s.kind == "version_regression"
    ]
    rises = [d for d in found if d.change.direction == "increase"]
    if switch_ms is not None:
        rises = [d for d in rises if d.change.event_time_ms >= switch_ms]
    return Outcome(
        regressions,
        sum(1 for s in signals if s.kind == "version_changed"),
        outcomes,
        switch_ms,
        len(rises),
        sum(1 for d in rises if d.versions is not None),
    )


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run(quick: bool) -> Suite:
    """Detection rate, delay and false alarms of ``version_regression``."""
    began = time.perf_counter()
    seeds = 2 if quick else 20
    stable_n = 10_000 if quick else 250_000
    stable_streams = 1 if quick else 4
    served = 1000 if quick else V2_OUTCOMES
    rates = {k: RATES[k] for k in ("+10 points", "equal")} if quick else RATES
    shares = (0.05, 0.5, 1.0) if quick else SHARES
    rows: list[Row] = []
    details: dict[str, Any] = {"cases": []}
    false_alarms = 0
    control_changes = 0
    control_outcomes = 0
    named = degradations = 0
    for label, rate in rates.items():
        for share in shares:
            hits: list[Outcome] = []
            runs = []
            for seed in range(seeds):
                arrivals, switch = build(1000 * seed + int(share * 100), share, rate, served=served)
                runs.append(drive(arrivals, switch))
            for r in runs:
                if r.regressions:
                    hits.append(r)
            delays_min = [(r.regressions[0]["at_ms"] - (r.switch_ms or 0)) / 60_000 for r in hits]
            v2_counts = [float(r.regressions[0]["count"]) for r in hits]
            paging = sum(1 for r in hits if r.regressions[0]["severity"] in ("warning", "critical"))
            case = {
                "change": label,
                "v2_rate": rate,
                "share": share,
                "runs": len(runs),
                "detected": len(hits),
                "paging": paging,
                "delay_min_median": _pct(delays_min, 50),
                "delay_min_max": max(delays_min) if delays_min else None,
                "v2_outcomes_median": _pct(v2_counts, 50),
                "compared": sorted({r.regressions[0]["compared"] for r in hits}),
                "version_changed": sum(r.changed for r in runs),
            }
            details["cases"].append(case)
            if rate <= OLD_RATE:
                false_alarms += len(hits)
                control_changes += len(runs)
                control_outcomes += sum(r.outcomes for r in runs)
            if share == 1.0:
                named += sum(r.named for r in runs)
                degradations += sum(r.degradations for r in runs)
            name = f"{label}, v2 at {share:.0%}" if share < 1 else f"{label}, switch"
            if rate > OLD_RATE:
                target = "= runs" if label == "+10 points" else ""
                rows.append(
                    Row(
                        f"version_regression detected: {name}",
                        len(hits),
                        f"of {len(runs)}",
                        target=target,
                        met=(len(hits) == len(runs)) if target else None,
                    )
                )
                if hits:
                    rows.append(
                        Row(
                            f"delay to the alert: {name} (median)",
                            round(_pct(delays_min, 50) or 0.0, 1),
                            "min",
                            baseline=f"v2 outcomes at the alert, median {_pct(v2_counts, 50):.0f}",
                        )
                    )
    stable_alarms = 0
    stable_outcomes = 0
    for seed in range(stable_streams):
        arrivals, switch = build(77_000 + seed, 0.0, OLD_RATE, before=stable_n, after=0)
        r = drive(arrivals, switch)
        stable_alarms += len(r.regressions) + r.changed
        stable_outcomes += r.outcomes
    per_million = false_alarms / max(control_outcomes, 1) * 1e6
    share_false = false_alarms / max(control_changes, 1)
    rows.append(
        Row(
            "false version_regression on equal or better versions",
            round(100 * share_false, 2),
            f"% of {control_changes} version changes ({false_alarms})",
            target="< 1 % (z = 3 with up to 8 looks: about 0.5 %)",
            met=share_false < 0.01,
        )
    )
    rows.append(
        Row(
            "false version_regression per million outcomes (controls)",
            round(per_million, 2),
            "/M",
            target="< 1",
            met=per_million < 1,
        )
    )
    rows.append(
        Row(
            "lifecycle alerts on stable streams (no version change)",
            stable_alarms,
            f"in {stable_outcomes:,} outcomes",
            target="0",
            met=stable_alarms == 0,
        )
    )
    rows.append(
        Row(
            "performance_degradation after a switch that names both versions",
            float(named),
            f"of {degradations}",
            target="= all",
            met=named == degradations,
        )
    )
    details["seconds"] = round(time.perf_counter() - began, 1)
    details["control_outcomes"] = control_outcomes
    details["stable_outcomes"] = stable_outcomes
    return Suite(
        name="model versions quality",
        rows=rows,
        details=details,
        notes=[
            f"v1 at {OLD_RATE:.0%} error for {BEFORE:,} predictions (1/s), then v2 on a share "
            f"of the traffic until it served {served:,}; labels log-normal, median 10 min; "
            f"{seeds} seeds per case; delay from v2's first prediction to the alert's event time",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the unit test)")
    parser.add_argument("--json", action="store_true", help="also print the details as JSON")
    args = parser.parse_args()
    suite = run(args.quick)
    print(markdown([suite.as_dict()]))
    if args.json:
        print(json.dumps(suite.details, indent=1))


if __name__ == "__main__":
    main()
