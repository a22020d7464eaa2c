"""Detection quality: seeded streams with known change points, run through ``ModelTrack``.

Every stream goes through the object the live worker and replay use: a ``ModelTrack`` per
model, outcomes pushed in *arrival* order with their completion times, released by the
watermark (largest completion seen minus the reorder lag) every ``BATCH`` outcomes, and
flushed at the end. The detectors therefore see what they would see in production,
including the canonical re-ordering and, when labels arrive later than the lag, late
outcomes processed out of order.

Streams (one prediction per second; ``errors`` are 0/1 unless said otherwise):

- abrupt and gradual increases of the error rate, of several sizes, after a long stable
  stretch, ``SEEDS`` seeds each;
- the same with label delays (log-normal, median 10 min) and with transport jitter, both
  within the reorder lag and beyond it (late outcomes);
- stationary streams of 1,000,000 outcomes at 5 %, 10 % and 30 % error, and one with
  regression-like errors ``|N(0, 1)|``, for false alarms.

Only ``increase`` changes count: they are what pages (``performance_degradation``); a
decrease is an ``info`` event that resolves incidents. A change is *detected* by the first
increase alert after the change point (counted in outcomes as the detectors see them:
the first outcome whose prediction came after the change), and its delay is the number
of outcomes from there to the alert. Any increase alert before the change point, and any
on a stationary stream, is a false alarm.

    python -m bench.quality [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from bench.report import Row, Suite, markdown
from detectors.config import MonitorConfig
from detectors.sequencer import Sequencer
from detectors.track import ModelTrack

__all__ = [
    "Scenario",
    "Stats",
    "Stream",
    "build_stream",
    "configurations",
    "detect",
    "run",
    "scenarios",
]

T0_MS = 1_795_000_000_000
SPACING_MS = 1000  # one prediction per second
BATCH = 1000  # outcomes pushed between two releases, as a worker batch
CHUNK = 100_000  # stationary streams are generated and fed in chunks of this size
DETECTORS = ("adwin", "page_hinkley", "bank")
MIN_TARGET_RISE = 0.05  # changes of +5 points or more must all be detected
FA_TARGET = 1.0  # false alarms per million outcomes, stationary streams


@dataclass(frozen=True)
class Scenario:
    """One family of seeded streams; ``before`` alone and ``after=None`` is stationary."""

    name: str
    before: float
    after: float | None = None
    n_before: int = 20_000
    n_after: int = 20_000
    ramp: int = 0  # gradual change: outcomes over which the rate climbs linearly
    label_delay_s: float = 0.0  # median of a log-normal label delay (sigma 1); 0 = none
    jitter_s: float = 0.0  # arrival delay after completion, uniform in [0, jitter)
    lag_s: float = 300.0  # the tracks' reorder lag (the worker's default)
    continuous: bool = False  # regression-like errors |N(0, before)| instead of 0/1
    seeds: int = 20

    @property
    def stationary(self) -> bool:
        return self.after is None

    @property
    def rise(self) -> float:
        return 0.0 if self.after is None else self.after - self.before

    @property
    def size(self) -> int:
        return self.n_before + (0 if self.stationary else self.n_after)


def scenarios(quick: bool) -> list[Scenario]:
    """The suite: change streams of several sizes and shapes, then stationary streams."""
    if quick:
        short: dict[str, Any] = {"n_before": 3000, "n_after": 4000, "seeds": 3}
        return [
            Scenario("abrupt 5%->50%", 0.05, 0.50, **short),
            Scenario("abrupt 5%->15%", 0.05, 0.15, **short),
            Scenario("abrupt 5%->15%, label delay 10 min", 0.05, 0.15, label_delay_s=600, **short),
            Scenario("stationary 5%", 0.05, n_before=30_000, seeds=1),
            Scenario("stationary 30%", 0.30, n_before=30_000, seeds=1),
        ]
    delayed: dict[str, Any] = {"label_delay_s": 600.0}
    million: dict[str, Any] = {"n_before": 1_000_000, "seeds": 1}
    return [
        Scenario("abrupt 5%->7%", 0.05, 0.07),
        Scenario("abrupt 5%->10%", 0.05, 0.10),
        Scenario("abrupt 5%->15%", 0.05, 0.15),
        Scenario("abrupt 10%->15%", 0.10, 0.15),
        Scenario("abrupt 10%->30%", 0.10, 0.30),
        Scenario("abrupt 30%->35%", 0.30, 0.35),
        Scenario("gradual 5%->10% over 5000", 0.05, 0.10, ramp=5000),
        Scenario("gradual 10%->30% over 5000", 0.10, 0.30, ramp=5000),
        Scenario("abrupt 5%->10%, label delay 10 min", 0.05, 0.10, **delayed),
        Scenario("abrupt 10%->30%, label delay 10 min", 0.10, 0.30, **delayed),
        Scenario(
            "abrupt 5%->10%, delay 10 min + jitter 2 min (within lag)",
            0.05,
            0.10,
            jitter_s=120,
            **delayed,
        ),
        Scenario(
            "abrupt 5%->10%, delay 10 min + jitter 10 min (lag 1 min: late)",
            0.05,
            0.10,
            jitter_s=600,
            lag_s=60,
            **delayed,
        ),
        Scenario("stationary 5%", 0.05, **million),
        Scenario("stationary 10%", 0.10, **million),
        Scenario("stationary 30%", 0.30, **million),
        Scenario("stationary regression, abs(N(0,1)) errors", 1.0, continuous=True, **million),
    ]


ADWIN_VARIANTS = (0.002, 0.0002, 1e-5)
PH_VARIANTS: tuple[dict[str, Any], ...] = (
    {"threshold": 50.0, "delta": 0.005, "alpha": 0.9999},  # river's defaults
    {"threshold": 100.0},
    {"threshold": 200.0},
    {"delta": 0.005},
    {"alpha": 0.9999},
)


def configurations() -> dict[str, MonitorConfig]:
    """The default configuration and single-setting variations of it, named as ``--set``.

    A variation of one detector leaves the other at its default, so only the detector
    that changed (and the bank) are reported for it.
    """
    default = MonitorConfig()
    out = {"default": default}
    for delta in ADWIN_VARIANTS:
        config = replace(default, adwin=replace(default.adwin, delta=delta))
        if config != default:
            out[f"adwin.delta={delta:g}"] = config
    for changes in PH_VARIANTS:
        config = replace(default, page_hinkley=replace(default.page_hinkley, **changes))
        if config != default:
            name = " ".join(f"ph.{key}={value:g}" for key, value in changes.items())
            out[name] = config
    return out


@dataclass
class Stream:
    """One seeded stream in arrival order, in chunks of (completion_ms, id, error) columns.

    ``change_at`` is the 0-based position, in the order the detectors see the outcomes,
    of the first one whose prediction came after the change (None: stationary).
    """

    scenario: Scenario
    seed: int
    chunks: list[tuple[list[int], list[str], list[float]]]
    change_at: int | None
    late: int = 0

    def __iter__(self) -> Iterator[tuple[list[int], list[str], list[float]]]:
        return iter(self.chunks)


def _rates(s: Scenario) -> np.ndarray:
    """The error rate (or scale) of each prediction, in prediction order."""
    rates = np.full(s.size, s.before)
    if s.after is not None:
        post = np.arange(s.n_after, dtype=float)
        if s.ramp:
            rates[s.n_before :] = s.before + (s.after - s.before) * np.minimum(
                1.0, (post + 1) / s.ramp
            )
        else:
            rates[s.n_before :] = s.after
    return rates


def build_stream(s: Scenario, seed: int) -> Stream:
    """The seeded stream ``seed`` of scenario ``s``, with its change position worked out."""
    rng = np.random.default_rng([seed, sum(map(ord, s.name))])
    if s.stationary and not s.label_delay_s and not s.jitter_s:
        return _in_order(s, rng, seed)
    n = s.size
    rates = _rates(s)
    errors = np.abs(rng.normal(0.0, rates)) if s.continuous else (rng.random(n) < rates) * 1.0
    predicted = T0_MS + np.arange(n, dtype=np.int64) * SPACING_MS
    completion = predicted.copy()
    if s.label_delay_s:
        delay_ms = np.exp(rng.normal(math.log(s.label_delay_s * 1000), 1.0, n))
        completion += delay_ms.astype(np.int64)
    arrival = completion.copy()
    if s.jitter_s:
        arrival += rng.integers(0, int(s.jitter_s * 1000), n)
    order = np.argsort(arrival, kind="stable")
    ids = [f"{i:08d}" for i in order.tolist()]
    comp, errs = completion[order].tolist(), errors[order].tolist()
    chunks = [
        (comp[i : i + BATCH], ids[i : i + BATCH], errs[i : i + BATCH]) for i in range(0, n, BATCH)
    ]
    # The order the detectors will see: run the stream through a bare sequencer with the
    # same pushes and releases a ModelTrack gets (it does not depend on the detectors).
    seq = Sequencer(int(s.lag_s * 1000))
    seen: list[str] = []
    for chunk in chunks:
        for c, p, e in zip(*chunk, strict=True):
            seq.push(c, p, e, None)
        seen += [item[1] for item in seq.ready()]
    seen += [item[1] for item in seq.drain()]
    change_at = None
    if not s.stationary:
        change_at = next(k for k, pid in enumerate(seen) if int(pid) >= s.n_before)
    return Stream(s, seed, chunks, change_at, seq.late)


def _in_order(s: Scenario, rng: np.random.Generator, seed: int) -> Stream:
    """A long stationary stream, labels at prediction time: generated chunk by chunk."""
    chunks = []
    ids = [f"{i:08d}" for i in range(CHUNK)]
    for start in range(0, s.size, CHUNK):
        n = min(CHUNK, s.size - start)
        if s.continuous:
            errs = np.abs(rng.normal(0.0, s.before, n)).tolist()
        else:
            errs = ((rng.random(n) < s.before) * 1.0).tolist()
        comp = list(range(T0_MS + start * SPACING_MS, T0_MS + (start + n) * SPACING_MS, SPACING_MS))
        chunks.append((comp, ids[:n], errs))
    return Stream(s, seed, chunks, None)


def detect(stream: Stream, config: MonitorConfig) -> list[tuple[int, str]]:
    """(1-based outcome index, detector) of every increase a ModelTrack reports."""
    track = ModelTrack("quality", config, lag_ms=int(stream.scenario.lag_s * 1000))
    push = track.push
    found = []
    for comp, ids, errs in stream:
        for start in range(0, len(comp), BATCH):
            end = start + BATCH
            for c, p, e in zip(comp[start:end], ids[start:end], errs[start:end], strict=True):
                push(c, p, e, None)
            found += track.release()
    found += track.flush()
    return [(d.change.index, d.change.detector) for d in found if d.change.direction == "increase"]


@dataclass
class Stats:
    """Detection quality of one detector (or the bank) and configuration on one scenario."""

    detected: int = 0
    runs: int = 0
    delays: list[int] = field(default_factory=list)
    false_alarms: int = 0
    clean_outcomes: int = 0  # outcomes on which an alert would be false

    def add(self, stream: Stream, alerts: list[int]) -> None:
        """Score one run: ``alerts`` are sorted 1-based indices of increase alerts."""
        self.runs += 1
        if stream.change_at is None:
            self.false_alarms += len(alerts)
            self.clean_outcomes += stream.scenario.size
            return
        change = stream.change_at  # alerts at index <= change came before any post-change outcome
        self.false_alarms += sum(1 for a in alerts if a <= change)
        self.clean_outcomes += change
        after = [a for a in alerts if a > change]
        if after:
            self.detected += 1
            self.delays.append(after[0] - change)

    @property
    def rate(self) -> float:
        return self.detected / self.runs if self.runs else math.nan

    @property
    def mean_delay(self) -> float:
        return float(np.mean(self.delays)) if self.delays else math.nan

    @property
    def p90_delay(self) -> float:
        return float(np.percentile(self.delays, 90)) if self.delays else math.nan

    @property
    def fa_per_million(self) -> float:
        return self.false_alarms / self.clean_outcomes * 1e6 if self.clean_outcomes else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "detected": self.detected,
            "mean_delay": _finite(self.mean_delay),
            "p90_delay": _finite(self.p90_delay),
            "false_alarms": self.false_alarms,
            "clean_outcomes": self.clean_outcomes,
            "fa_per_million": _finite(self.fa_per_million),
        }


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def alone(config: MonitorConfig, detector: str) -> MonitorConfig:
    """``config`` with only ``detector`` enabled."""
    if detector == "adwin":
        return replace(config, page_hinkley=replace(config.page_hinkley, enabled=False))
    return replace(config, adwin=replace(config.adwin, enabled=False))


def evaluate(
    suite: list[Scenario], configs: dict[str, MonitorConfig]
) -> dict[tuple[str, str, str], Stats]:
    """Stats per (scenario, configuration, detector); each stream is built once.

    Each distinct detector setting runs once per stream, alone in its track; a bank's
    alerts are the union of its two detectors' (they are independent: each sees the same
    outcomes in the same order). The default bank also runs as one track, and must give
    exactly that union.
    """
    table: dict[tuple[str, str, str], Stats] = {}
    settings = {
        (detector, alone(config, detector))
        for config in configs.values()
        for detector in ("adwin", "page_hinkley")
    }
    default = configs["default"]

    def same(config: MonitorConfig, detector: str) -> bool:
        return bool(getattr(config, detector) == getattr(default, detector))

    for s in suite:
        for seed in range(s.seeds):
            stream = build_stream(s, seed)
            alerts = {(d, c): [i for i, _ in detect(stream, c)] for d, c in settings}
            parts = {d: alerts[d, alone(default, d)] for d in ("adwin", "page_hinkley")}
            bank = [i for i, _ in detect(stream, default)]
            if bank != sorted(set(parts["adwin"]) | set(parts["page_hinkley"])):
                raise AssertionError(f"{s.name} seed {seed}: bank {bank} != union of {parts}")
            for name, config in configs.items():
                by = {d: alerts[d, alone(config, d)] for d in ("adwin", "page_hinkley")}
                by["bank"] = sorted(set(by["adwin"]) | set(by["page_hinkley"]))
                for detector in DETECTORS:
                    if name != "default" and detector != "bank" and same(config, detector):
                        continue  # a variation of the other detector: as in the default
                    table.setdefault((s.name, name, detector), Stats()).add(stream, by[detector])
    return table


def _summary(s: Scenario, stats: Stats) -> list[Row]:
    """The rows of one scenario for the default bank."""
    if s.stationary:
        fa = stats.fa_per_million
        return [
            Row(f"false alarms per million outcomes: {s.name}", fa, "/M",
                baseline=f"{stats.clean_outcomes:,} outcomes", target=f"< {FA_TARGET:g}",
                met=fa < FA_TARGET),
        ]  # fmt: skip
    required = s.rise >= MIN_TARGET_RISE - 1e-9
    rate = 100.0 * stats.rate
    return [
        Row(f"detected: {s.name}", rate, "%", baseline=f"{stats.runs} seeds",
            target="100%" if required else "", met=rate == 100.0 if required else None),
        Row(f"delay: {s.name} (p90 {stats.p90_delay:,.0f})", stats.mean_delay, "outcomes"),
    ]  # fmt: skip


def run(quick: bool) -> Suite:
    """Detection rate, delays and false alarms of the default bank (rows) and of every
    detector and configuration (details)."""
    began = time.perf_counter()
    suite = scenarios(quick)
    configs = configurations()
    table = evaluate(suite, configs)
    rows = [row for s in suite for row in _summary(s, table[s.name, "default", "bank"])]
    stationary = {s.name: s.stationary for s in suite}
    default = configs["default"]
    return Suite(
        name="detection quality",
        rows=rows,
        details={
            "default": {
                "adwin": asdict(default.adwin),
                "page_hinkley": asdict(default.page_hinkley),
            },
            "configurations": {name: _settings(c, default) for name, c in configs.items()},
            "scenarios": [asdict(s) for s in suite],
            "results": [
                {
                    "scenario": s,
                    "config": c,
                    "detector": d,
                    "stationary": stationary[s],
                    **stats.as_dict(),
                }
                for (s, c, d), stats in table.items()
            ],
            "seconds": round(time.perf_counter() - began, 1),
        },
        notes=[
            "default bank (either detector firing), increase alerts only (what pages); delays "
            "in outcomes from the first post-change outcome the detectors see; change streams: "
            f"{suite[0].n_before:,} outcomes before the change and {suite[0].n_after:,} after, "
            f"{suite[0].seeds} seeds; every detector and configuration: details['results']",
            "ph.threshold=50 ph.delta=0.005 ph.alpha=0.9999 is river's Page-Hinkley, the "
            "previous default; false alarms per million come from one 1M stream per rate here, "
            "the defaults were chosen on 20M per rate (detectors/config.py)",
        ],
    )


def _settings(config: MonitorConfig, default: MonitorConfig) -> dict[str, Any]:
    """The fields in which ``config`` differs from ``default``."""
    out = {}
    for section in ("adwin", "page_hinkley"):
        mine, theirs = asdict(getattr(config, section)), asdict(getattr(default, section))
        out.update({f"{section}.{k}": v for k, v in mine.items() if theirs[k] != v})
    return out


def table_text(details: dict[str, Any]) -> str:
    """Every detector and configuration as one Markdown table (for the standalone run)."""
    lines = [
        "| scenario | config | detector | detected | mean delay | p90 delay | FA/M |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in details["results"]:
        detected = "" if r["stationary"] else f"{r['detected']}/{r['runs']}"
        lines.append(
            f"| {r['scenario']} | {r['config']} | {r['detector']} | {detected} "
            f"| {_fmt(r['mean_delay'])} | {_fmt(r['p90_delay'])} | {_fmt(r['fa_per_million'])} |"
        )
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:,.0f}" if abs(x) >= 10 else f"{x:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--json", action="store_true", help="also print the details as JSON")
    args = parser.parse_args()
    suite = run(args.quick)
    print(markdown([suite.as_dict()]))
    print(table_text(suite.details))
    if args.json:
        print(json.dumps(suite.details, indent=1))


if __name__ == "__main__":
    main()
