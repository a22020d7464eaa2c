"""Detection quality of the label-free and liveness signals: seeded streams, known changes.

Every stream goes through :class:`~detectors.track.ModelTrack`, the object the live worker
and replay use, the way the detect step drives it. Prediction events (served predictions,
and dead-lettered ones as ``None``) are ``see``-n at their event time, outcomes ``push``-ed
when their label arrives (completion = the label's time, labels never precede their
prediction here). A batch ends every ``BATCH`` predictions and at least every ``TICK_MS``
of event time; at its end ``T``:

- ``pbound = T - lag``: the prediction watermark. It follows the clock rather than this
  model's newest prediction because other models keep serving (what the detect step's
  prediction watermark is); it is what lets a silence be seen while it lasts;
- ``bound = min(pbound, newest label time pushed - lag)`` ("own" label watermark), or
  ``pbound`` ("shared": other models' labels keep the label watermark moving, the case
  of a single model whose labels stop);
- ``signals(pbound)``, ``release(bound)``, ``finish(bound)``; at the end of the stream
  ``flush_signals()``, ``flush()``, ``finish(None)``.

Streams (event times in ms, one prediction per second unless said; classifiers have
calibrated scores: a confidence ``c ~ Beta(4, 1.5)``, score ``0.5 +- c/2``, the label
drawn as Bernoulli(score), so the expected error is ``(1 - c)/2``, 13.6 %):

1. ``prediction_drift``: the predicted-positive rate moves by 10 and 20 points, the
   confidence drops (score distribution), a regression's mean moves by 0.5 and 1 std or
   its spread doubles; and, on the same streams, a windowed PSI (windows of 1,000
   predictions against the first 1,000) for comparison;
2. stationary streams of 1,000,000 predictions per family (Poisson, bursty, daily
   seasonality in volume, label delays log-normal or in daily batches, 20 % of labels
   never arriving, a regression), 1 % of events dead-lettered throughout, for false
   alarms of every signal kind; and daily label batches again with ``labels`` settings
   that suit them (outside the totals);
3. ``labels_missing``: labels stop, coverage falls to 30 %, or the delay grows 5x, for 12 h
   (shared label watermark); and labels stop with the model's own label watermark, which
   then stalls: the alert has the same event time but goes out only when labels resume;
4. ``model_silent``: a silence of 10x the usual gap (SilenceConfig's: the 99th percentile
   of the recent gaps), and of 10x the mean gap;
5. ``input_quality``: the dead-lettered share goes from 0 to 5 % and 20 % (and to 0.5 %,
   under ``min_rate``: not to be reported);
6. ``estimated_degradation``: the confidence drops (expected error rises) with labels
   delayed 6 h (median), against the label-based ``performance_degradation``; and an
   error rise the scores do not show; and the demo's own three degradations, through the
   replay engine (:mod:`bench.demo_signals`).

A signal alarms when it is ``firing`` (an estimated_degradation's reconciliation is a
follow-up of an alarm, not an alarm: counted apart). Delays run from the change point to
the alarm's ``event_time_ms``, in event time and in predictions served meanwhile. Any
alarm of a kind on a stationary stream, or before the change point, is a false alarm.
"paging" counts the runs where an alarm above ``info`` followed the change.

    python -m bench.quality_signals [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from bench import demo_signals
from bench.report import Row, Suite, markdown
from detectors.config import MonitorConfig
from detectors.histogram import LogHistogram
from detectors.track import ModelTrack

__all__ = [
    "KINDS",
    "Case",
    "Run",
    "Stream",
    "build",
    "cases",
    "drive",
    "psi_series",
    "run",
]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0_MS = 20_776 * DAY_MS  # a midnight (UTC): daily label batches land at 02:00
LAG_MS = 300_000  # the worker's default reorder lag
BATCH = 500  # predictions between two releases ...
TICK_MS = 500_000  # ... and at most this much event time
KINDS = (
    "prediction_drift",
    "labels_missing",
    "model_silent",
    "input_quality",
    "estimated_degradation",
)
FA_TARGET = 1.0  # false alarms per million predictions, per signal kind
CONF_A, CONF_B = 4.0, 1.5  # Beta of a calibrated classifier's confidence
STABLE_INVALID = 0.01  # share of dead-lettered events on the stationary streams
PSI_WINDOW = 1000
PSI_THRESHOLDS = (0.1, 0.25)
PSI_EPS = 1e-4  # floor of a bin's share (the usual PSI smoothing)
_GAP_DECAY = 0.998  # SignalWatch's gap histogram (detectors/signals.py)


# --- streams ------------------------------------------------------------------------------


@dataclass
class Stream:
    """One seeded stream of prediction events (sorted by event time) and their labels."""

    ms: np.ndarray  # int64 event time of every prediction event
    valid: np.ndarray  # bool: served (False: dead-lettered)
    prediction: np.ndarray  # int 0/1 (classification) or float (regression)
    score: np.ndarray | None  # calibrated P(positive), classification only
    label_ms: np.ndarray  # int64 arrival time of the label; -1: never
    error: np.ndarray  # float error of the outcome
    change_ms: int | None = None
    recover_ms: int | None = None  # when the change is undone (labels come back, ...)
    shared_labels: bool = False  # label watermark moved by other models' labels
    regression: bool = False


@dataclass(frozen=True)
class Case:
    """A family of streams: ``kind`` names the builder, ``params`` its settings."""

    name: str
    kind: str  # drift, stationary, labels, silence, quality, estimated
    params: tuple[tuple[str, Any], ...]
    seeds: int = 1

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)


def _case(name: str, kind: str, seeds: int = 1, **params: Any) -> Case:
    return Case(name, kind, tuple(sorted(params.items())), seeds)


def poisson_times(rng: np.random.Generator, n: int, rate_per_s: float, t0: int) -> np.ndarray:
    gaps = rng.exponential(1000.0 / rate_per_s, n)
    return t0 + np.cumsum(gaps).astype(np.int64)


def bursty_times(rng: np.random.Generator, n: int, t0: int, regular: bool = False) -> np.ndarray:
    """Bursts of Poisson(20) predictions within 100 ms; the bursts come every 60 s on
    average, at Poisson times, or ``regular``-ly (every 30 to 90 s, uniform)."""
    m = n // 20 + 50
    gaps = rng.uniform(30_000.0, 90_000.0, m) if regular else rng.exponential(60_000.0, m)
    starts = t0 + np.cumsum(gaps)
    sizes = np.maximum(1, rng.poisson(20, m))
    times = np.repeat(starts, sizes) + rng.uniform(0, 100, int(sizes.sum()))
    times = np.sort(times.astype(np.int64))
    if len(times) < n:  # vanishingly unlikely with 50 spare bursts
        raise RuntimeError("too few bursts")
    return times[:n]


def seasonal_times(rng: np.random.Generator, n: int, t0: int, amp: float = 0.8) -> np.ndarray:
    """Rate 1/s x (1 + amp sin(2 pi t / day)), by thinning a Poisson process of rate
    (1 + amp)/s."""
    out: list[np.ndarray] = []
    got, start = 0, float(t0)
    while got < n:
        k = int((n - got) * (1 + amp) * 1.1) + 1000
        cand = start + np.cumsum(rng.exponential(1000.0 / (1 + amp), k))
        start = float(cand[-1])
        keep = rng.random(k) * (1 + amp) < 1 + amp * np.sin(2 * np.pi * (cand - t0) / DAY_MS)
        out.append(cand[keep])
        got += int(keep.sum())
    return np.concatenate(out)[:n].astype(np.int64)


def calibrated(
    rng: np.random.Generator, n: int, positive_rate: Any, confidence: Any = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction 0/1, score, label) of a calibrated classifier: the share ``positive_rate``
    predicted positive, confidence ``c ~ Beta(4, 1.5) x confidence``."""
    c = rng.beta(CONF_A, CONF_B, n) * confidence
    positive = rng.random(n) < positive_rate
    score = np.where(positive, 0.5 + 0.5 * c, 0.5 - 0.5 * c)
    label = rng.random(n) < score
    return positive.astype(np.int64), score, label


def label_times(
    rng: np.random.Generator, ms: np.ndarray, how: str, median_s: float = 600.0
) -> np.ndarray:
    """Arrival times of the labels: ``now`` (at prediction time), ``lognormal`` (median
    ``median_s``, sigma 1) or ``daily`` (every label of a day at 02:00 the next day)."""
    if how == "now":
        return ms.copy()
    if how == "lognormal":
        return ms + np.exp(rng.normal(math.log(median_s * 1000.0), 1.0, len(ms))).astype(np.int64)
    if how == "daily":
        return (ms // DAY_MS + 1) * DAY_MS + 2 * HOUR_MS
    raise ValueError(how)


def _classification_stream(
    rng: np.random.Generator,
    ms: np.ndarray,
    positive_rate: Any,
    confidence: Any = 1.0,
    labels: str = "now",
    median_s: float = 600.0,
    missing: float = 0.0,
    invalid: Any = 0.0,
    flip: Any = 0.0,
) -> Stream:
    n = len(ms)
    prediction, score, label = calibrated(rng, n, positive_rate, confidence)
    label = label ^ (rng.random(n) < flip)  # errors the scores do not know about
    error = (prediction != label).astype(np.float64)
    valid = rng.random(n) >= invalid
    label_ms = label_times(rng, ms, labels, median_s)
    label_ms[(rng.random(n) < missing) | ~valid] = -1
    return Stream(ms, valid, prediction, score, label_ms, error)


def build(case: Case, seed: int) -> Stream:
    """The seeded stream ``seed`` of ``case``."""
    rng = np.random.default_rng([seed, zlib.crc32(case.name.encode())])
    p = case.p
    builder = _BUILDERS[case.kind]
    return builder(rng, p)


def _drift(rng: np.random.Generator, p: dict[str, Any]) -> Stream:
    """n_before predictions, then n_after with ``after`` changed, then n_back (0 unless
    given) as before the change; no labels."""
    nb, na, nback = p["n_before"], p["n_after"], p.get("n_back", 0)
    n = nb + na + nback
    ms = poisson_times(rng, n, 1.0, T0_MS)
    after = (np.arange(n) >= nb) & (np.arange(n) < nb + na)
    change_ms = int(ms[nb])
    recover_ms = int(ms[nb + na]) if nback else None
    if p.get("regression"):
        mean = np.where(after, p.get("mean_after", 0.0), 0.0)
        sd = np.where(after, p.get("sd_after", 1.0), 1.0)
        prediction = 100.0 + 10.0 * (mean + sd * rng.standard_normal(n))
        error = np.abs(rng.standard_normal(n))
        none = np.full(n, -1, dtype=np.int64)
        return Stream(
            ms, np.ones(n, bool), prediction, None, none, error, change_ms, recover_ms, True, True
        )
    rate = np.where(after, p.get("rate_after", p["rate"]), p["rate"])
    conf = np.where(after, p.get("confidence_after", 1.0), 1.0)
    s = _classification_stream(rng, ms, rate, conf)
    s.label_ms[:] = -1
    s.change_ms, s.recover_ms, s.shared_labels = change_ms, recover_ms, True
    return s


def _stationary(rng: np.random.Generator, p: dict[str, Any]) -> Stream:
    n = p["n"]
    arrivals = p.get("arrivals", "poisson")
    if arrivals in ("bursty", "bursty-regular"):
        ms = bursty_times(rng, n, T0_MS, regular=arrivals == "bursty-regular")
    elif arrivals == "seasonal":
        ms = seasonal_times(rng, n, T0_MS)
    else:
        ms = poisson_times(rng, n, 1.0, T0_MS)
    labels, missing = p.get("labels", "now"), p.get("missing", 0.0)
    if p.get("regression"):
        prediction = 100.0 + 10.0 * rng.standard_normal(n)
        error = np.abs(rng.standard_normal(n))
        valid = rng.random(n) >= STABLE_INVALID
        label_ms = label_times(rng, ms, labels)
        label_ms[(rng.random(n) < missing) | ~valid] = -1
        return Stream(ms, valid, prediction, None, label_ms, error, regression=True)
    return _classification_stream(
        rng, ms, 0.3, labels=labels, missing=missing, invalid=STABLE_INVALID
    )


def _labels(rng: np.random.Generator, p: dict[str, Any]) -> Stream:
    """Labels log-normal (median 10 min) for ``before_h``; then for ``outage_h`` the labels
    stop, are kept at ``coverage``, or come ``delay_x`` times later; then back to normal."""
    hours = p["before_h"] + p["outage_h"] + p["after_h"]
    n = int(hours * 3600 * 1.05) + 1000
    ms = poisson_times(rng, n, 1.0, T0_MS)
    ms = ms[ms < T0_MS + hours * HOUR_MS]
    change = T0_MS + p["before_h"] * HOUR_MS
    recover = change + p["outage_h"] * HOUR_MS
    s = _classification_stream(rng, ms, 0.3, labels="lognormal")
    during = (ms >= change) & (ms < recover)
    what = p["what"]
    if what == "stop":  # no label arrives during the outage (those due then are lost)
        s.label_ms[(s.label_ms >= change) & (s.label_ms < recover)] = -1
    elif what == "coverage":
        s.label_ms[during & (rng.random(len(ms)) >= p["coverage"])] = -1
    elif what == "delay":
        delay = s.label_ms - ms
        s.label_ms = np.where(during, ms + delay * p["delay_x"], s.label_ms)
    s.change_ms, s.recover_ms = change, recover
    s.shared_labels = p.get("shared", True)
    return s


def usual_gap_ms(ms: np.ndarray) -> float:
    """SilenceConfig's usual gap after ``ms``: the 99th percentile of the decaying gap
    histogram SignalWatch keeps (same bins and decay, each gap weighted by its length)."""
    hist = LogHistogram(_GAP_DECAY)
    for gap in np.diff(ms).tolist():
        hist.add(gap, gap)
    return hist.quantile(0.99) or 0.0


def _silence(rng: np.random.Generator, p: dict[str, Any]) -> Stream:
    """n_before predictions at ``rate`` per s, a silence of ``times`` x the usual gap (``of``
    = "p99": SilenceConfig's; "mean": 1/rate), then n_after more."""
    nb, na, rate = p["n_before"], p["n_after"], p["rate"]
    if p.get("arrivals") == "bursty":
        ms = bursty_times(rng, nb + na, T0_MS)
    else:
        ms = poisson_times(rng, nb + na, rate, T0_MS)
    usual = usual_gap_ms(ms[:nb]) if p["of"] == "p99" else 1000.0 / rate
    silence = int(p["times"] * usual)
    ms[nb:] += silence  # the gap before prediction nb grows by the silence
    s = _classification_stream(rng, ms, 0.3)
    s.label_ms[:] = -1
    s.change_ms, s.recover_ms, s.shared_labels = int(ms[nb - 1]), int(ms[nb]), True
    return s


def _quality(rng: np.random.Generator, p: dict[str, Any]) -> Stream:
    """n_before events with no dead letter, n_after with ``invalid`` of them dead-lettered,
    n_back clean again."""
    nb, na, nk = p["n_before"], p["n_after"], p["n_back"]
    n = nb + na + nk
    ms = poisson_times(rng, n, 1.0, T0_MS)
    at = np.arange(n)
    invalid = np.where((at >= nb) & (at < nb + na), p["invalid"], 0.0)
    s = _classification_stream(rng, ms, 0.3, invalid=invalid)
    s.label_ms[:] = -1
    s.change_ms, s.recover_ms, s.shared_labels = int(ms[nb]), int(ms[nb + na]), True
    return s


def _estimated(rng: np.random.Generator, p: dict[str, Any]) -> Stream:
    """A calibrated classifier, labels log-normal (median ``median_h``); after ``before_h``
    its confidence is multiplied by ``confidence`` (scores move toward 0.5, labels follow
    them: the error rises as expected) or labels are flipped with probability ``flip``
    (the error rises, the scores do not show it)."""
    hours = p["before_h"] + p["after_h"]
    n = int(hours * 3600 * 1.05) + 1000
    ms = poisson_times(rng, n, 1.0, T0_MS)
    ms = ms[ms < T0_MS + hours * HOUR_MS]
    change = T0_MS + p["before_h"] * HOUR_MS
    after = ms >= change
    conf = np.where(after, p.get("confidence", 1.0), 1.0)
    flip = np.where(after, p.get("flip", 0.0), 0.0)
    s = _classification_stream(
        rng, ms, 0.3, conf, labels="lognormal", median_s=p["median_h"] * 3600, flip=flip
    )
    s.change_ms = change
    return s


_BUILDERS: dict[str, Callable[[np.random.Generator, dict[str, Any]], Stream]] = {
    "drift": _drift,
    "stationary": _stationary,
    "labels": _labels,
    "silence": _silence,
    "quality": _quality,
    "estimated": _estimated,
}


# --- driving a ModelTrack -----------------------------------------------------------------


@dataclass
class Run:
    """What one stream produced: every signal, and the label-based increase detections."""

    case: str
    seed: int
    events: int
    served: int
    change_ms: int | None
    recover_ms: int | None
    change_at: int | None  # predictions served before the change
    signals: list[dict[str, Any]]  # kind, detector, signal, status, severity, ms, n, ...
    increases: list[tuple[int, int]]  # (event ms, emitted at) of label-based ones
    late: int = 0
    psi: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def drive(stream: Stream, config: MonitorConfig | None = None, lag_ms: int = LAG_MS) -> Run:
    """Run ``stream`` through a ModelTrack as the detect step does; see the module doc."""
    config = config or MonitorConfig()
    track = ModelTrack("m", config, lag_ms=lag_ms)
    ms = stream.ms
    n = len(ms)
    # random-looking ids, as UUIDs are: ties of completion time (a batch of labels) are
    # then released in no particular order of prediction time
    order_ids = np.random.default_rng(n).permutation(n).tolist()
    ids = [f"p{x:09d}" for x in order_ids]
    ms_l = ms.tolist()
    pred_l = stream.prediction.tolist()
    score_l = stream.score.tolist() if stream.score is not None else [None] * n
    valid_l = stream.valid.tolist()
    has = np.nonzero(stream.label_ms >= 0)[0]
    comp = np.maximum(stream.label_ms[has], ms[has])
    order = np.argsort(comp, kind="stable")
    has, comp = has[order], comp[order]
    comp_l, has_l, err_l = comp.tolist(), has.tolist(), stream.error.tolist()
    grid = np.arange(ms[0] + TICK_MS, max(ms[-1], comp[-1] if len(comp) else 0) + TICK_MS, TICK_MS)
    ends = np.union1d(ms[BATCH - 1 :: BATCH], grid)
    see, push = track.see, track.push
    signals, increases = [], []
    i = k = 0
    newest_label: int | None = None
    last_ms = ms_l[-1]
    for end in ends.tolist():
        j = int(np.searchsorted(ms, end, side="right")) if i < n else n
        for e in range(i, j):
            payload = (pred_l[e], score_l[e], "1") if valid_l[e] else None
            see(ms_l[e], ids[e], payload)
        i = j
        kk = int(np.searchsorted(comp, end, side="right")) if k < len(comp_l) else k
        for o in range(k, kk):
            e = has_l[o]
            push(comp_l[o], ids[e], err_l[e], ("1", ms_l[e]))
        if kk > k:
            newest_label = comp_l[kk - 1]
        k = kk
        pbound = min(end, last_ms) - lag_ms  # the stream's end is not a silence
        if stream.shared_labels:
            bound: int | None = pbound
        else:
            bound = None if newest_label is None else min(pbound, newest_label - lag_ms)
        got = track.signals(pbound)
        if bound is not None:
            increases += [(d, end) for d in track.release(bound)]
        got += track.finish(bound)
        signals += [(x, end) for x in got]
    end = max(ms_l[-1], comp_l[-1] if comp_l else 0)
    signals += [(x, end) for x in track.flush_signals()]
    increases += [(d, end) for d in track.flush()]
    signals += [(x, end) for x in track.finish(None)]
    served_ms = ms[stream.valid]
    change_at = None
    if stream.change_ms is not None:
        change_at = int(np.searchsorted(served_ms, stream.change_ms, side="left"))

    def served_before(t: int) -> int:
        return int(np.searchsorted(served_ms, t, side="right"))

    return Run(
        case="",
        seed=0,
        events=n,
        served=len(served_ms),
        change_ms=stream.change_ms,
        recover_ms=stream.recover_ms,
        change_at=change_at,
        signals=[
            {
                "kind": s.kind,
                "detector": s.detector,
                "signal": s.signal,
                "status": s.status,
                "severity": s.severity,
                "direction": s.direction,
                "ms": s.event_time_ms,
                "out_ms": max(out, s.event_time_ms),  # the batch that emitted it
                "n": served_before(s.event_time_ms),
                "before": s.before,
                "after": s.after,
            }
            for s, out in signals
        ],
        increases=[
            (d.change.event_time_ms, max(out, d.change.event_time_ms))
            for d, out in increases
            if d.change.direction == "increase"
        ],
        late=track.sequencer.late,
    )


# --- the windowed PSI baseline ------------------------------------------------------------


def psi_series(values: np.ndarray, bins: int, window: int = PSI_WINDOW) -> np.ndarray:
    """PSI of each window of ``window`` values after the first, against the first.

    ``bins == 2`` takes ``values`` as 0/1 classes; otherwise bins are the deciles (for
    10) of the reference window. Shares are floored at ``PSI_EPS``."""
    count = len(values) // window
    if count < 2:
        return np.zeros(0)
    v = np.asarray(values[: count * window])
    if bins == 2:
        b = v.astype(np.int64)
    else:
        edges = np.quantile(v[:window], np.linspace(0, 1, bins + 1)[1:-1])
        b = np.searchsorted(edges, v, side="right")
    keys = np.repeat(np.arange(count), window) * bins + b
    shares = np.bincount(keys, minlength=count * bins).reshape(count, bins) / window
    shares = np.maximum(shares, PSI_EPS)
    ref, cur = shares[0], shares[1:]
    return ((cur - ref) * np.log(cur / ref)).sum(axis=1)


def _psi(stream: Stream) -> dict[str, list[float]]:
    """PSI per window of the served predictions: the positive rate (2 bins) and the score
    (10 bins) of a classifier, the value (10 bins) of a regression."""
    served = stream.valid
    if stream.regression:
        return {"value": psi_series(stream.prediction[served], 10).round(5).tolist()}
    assert stream.score is not None
    return {
        "rate": psi_series(stream.prediction[served], 2).round(5).tolist(),
        "score": psi_series(stream.score[served], 10).round(5).tolist(),
    }


# --- the cases ----------------------------------------------------------------------------


def cases(quick: bool) -> list[Case]:
    """Every stream family of the suite, at full or quick sizes."""
    out: list[Case] = []
    add = out.append
    # 1. prediction drift: 10- and 20-point shifts of the positive rate, the score, a regression
    seeds = 3 if quick else 20
    sizes = (
        {"n_before": 3000, "n_after": 6000} if quick else {"n_before": 10_000, "n_after": 20_000}
    )
    shifts = [(0.3, 0.4), (0.3, 0.2), (0.1, 0.2), (0.5, 0.6)]
    if not quick:
        shifts += [(0.3, 0.5), (0.5, 0.3), (0.3, 0.35)]
    for a, b in shifts:
        add(_case(f"positive rate {a:.0%}->{b:.0%}", "drift", seeds, rate=a, rate_after=b, **sizes))
    if not quick:
        for c in (0.7, 0.85):
            name = f"score: confidence x{c:g} (rate 30%)"
            add(_case(name, "drift", seeds, rate=0.3, confidence_after=c, **sizes))
        regression = {"regression": True, **sizes}
        add(_case("regression mean +0.5 sd", "drift", seeds, mean_after=0.5, **regression))
        add(_case("regression mean +1 sd", "drift", seeds, mean_after=1.0, **regression))
        add(_case("regression spread x2", "drift", seeds, sd_after=2.0, **regression))
    # ... and drifts that go away again: the incident resolves
    back = {**sizes, "n_back": sizes["n_after"]}
    for a, b in [(0.3, 0.4)] if quick else [(0.3, 0.4), (0.3, 0.5), (0.5, 0.3)]:
        name = f"positive rate {a:.0%}->{b:.0%}->{a:.0%}"
        add(_case(name, "drift", seeds, rate=a, rate_after=b, **back))
    if not quick:
        name = "regression mean +1 sd and back"
        add(_case(name, "drift", seeds, mean_after=1.0, regression=True, **back))
    # 2. stationary families, for false alarms
    n = 40_000 if quick else 1_000_000
    for name, params in (
        ("Poisson, labels at once", {}),
        ("bursts every 30-90 s, labels at once", {"arrivals": "bursty-regular"}),
        ("bursts at Poisson times, labels at once", {"arrivals": "bursty"}),
        ("daily seasonality, labels at once", {"arrivals": "seasonal"}),
        ("labels log-normal 10 min", {"labels": "lognormal"}),
        ("labels in daily batches at 02:00", {"labels": "daily"}),
        ("20% of labels never arrive", {"labels": "lognormal", "missing": 0.2}),
        ("regression, labels log-normal 10 min", {"labels": "lognormal", "regression": True}),
    ):
        add(_case(f"stationary: {name}", "stationary", n=n, **params))
    if not quick:  # configured variants, outside the default totals
        for settings in (
            {"expected_delay_s": 30 * 3600.0},
            {"expected_delay_s": 30 * 3600.0, "delay_growth": 20.0},
        ):
            text = ", ".join(f"labels.{k} = {v:g}" for k, v in settings.items())
            name = f"stationary: labels in daily batches, {text}"
            labels_config = tuple(sorted(settings.items()))
            add(_case(name, "stationary", n=n, labels="daily", labels_config=labels_config))
    # 3. labels_missing
    timing = (
        {"before_h": 8, "outage_h": 8, "after_h": 12}
        if quick
        else {"before_h": 24, "outage_h": 12, "after_h": 12}
    )
    seeds = 1 if quick else 3
    add(_case("labels stop", "labels", seeds, what="stop", **timing))
    add(_case("label coverage 100%->30%", "labels", seeds, what="coverage", coverage=0.3, **timing))
    add(_case("label delay x5", "labels", seeds, what="delay", delay_x=5, **timing))
    if not quick:
        name = "labels stop, own label watermark"
        add(_case(name, "labels", 1, what="stop", shared=False, **timing))
    # 4. model_silent
    seeds = 3 if quick else 10
    silence: dict[str, Any] = {"n_before": 2000, "n_after": 500, "times": 10}
    for rate in (0.1, 0.02) if quick else (1.0, 0.1, 0.02):
        add(
            _case(
                f"silent 10x p99 gap at {rate:g}/s",
                "silence",
                seeds,
                rate=rate,
                of="p99",
                **silence,
            )
        )
    if not quick:
        for rate in (1.0, 0.1):
            name = f"silent 10x mean gap at {rate:g}/s"
            add(_case(name, "silence", seeds, rate=rate, of="mean", **silence))
        name = "silent 10x p99 gap, bursts at Poisson times"
        add(_case(name, "silence", seeds, rate=1 / 3, of="p99", arrivals="bursty", **silence))
    # 5. input_quality
    q = (
        {"n_before": 3000, "n_after": 3000, "n_back": 3000}
        if quick
        else {"n_before": 10_000, "n_after": 10_000, "n_back": 10_000}
    )
    for rate in (0.05, 0.20) if quick else (0.05, 0.20, 0.005):
        add(_case(f"dead letters 0->{rate:.1%}", "quality", 2 if quick else 10, invalid=rate, **q))
    # 6. estimated_degradation (full runs only)
    if not quick:
        est: dict[str, Any] = {"before_h": 24, "after_h": 24, "median_h": 6}
        add(_case("confidence x0.7, labels 6 h", "estimated", 5, confidence=0.7, **est))
        add(_case("confidence x0.85, labels 6 h", "estimated", 5, confidence=0.85, **est))
        name = "error +10% flips, scores unchanged, labels 6 h"
        add(_case(name, "estimated", 5, flip=0.1, **est))
    return out


def config_of(case: Case) -> MonitorConfig:
    """The defaults, or with the ``labels`` settings the case sets (``labels_config``)."""
    labels = case.p.get("labels_config")
    if labels is None:
        return MonitorConfig()
    return MonitorConfig(labels=replace(MonitorConfig().labels, **dict(labels)))


def run_one(task: tuple[Case, int]) -> Run:
    """Build and drive one seeded stream (a pool task)."""
    case, seed = task
    began = time.perf_counter()
    stream = build(case, seed)
    result = drive(stream, config_of(case))
    result.case, result.seed = case.name, seed
    if case.kind in ("drift", "stationary"):
        result.psi = _psi(stream)
    result.seconds = round(time.perf_counter() - began, 2)
    return result


def run_all(suite: list[Case], workers: int) -> dict[str, list[Run]]:
    """Every (case, seed), largest first, on ``workers`` processes (1: in process)."""
    tasks = [(c, seed) for c in suite for seed in range(c.seeds)]
    tasks.sort(key=lambda t: -_weight(t[0]))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(run_one, tasks, chunksize=1))
    else:
        results = [run_one(t) for t in tasks]
    out: dict[str, list[Run]] = {c.name: [] for c in suite}
    for r in results:
        out[r.case].append(r)
    for runs in out.values():
        runs.sort(key=lambda r: r.seed)
    return out


def _weight(c: Case) -> float:
    p = c.p
    if "n" in p:
        return p["n"] * 2
    if "before_h" in p:
        return (p["before_h"] + p.get("outage_h", 0) + p["after_h"]) * 3600 * 1.5
    return sum(p.get(k, 0) for k in ("n_before", "n_after", "n_back"))


# --- scoring ------------------------------------------------------------------------------


def alarms(run: Run, kind: str) -> list[dict[str, Any]]:
    """The firing signals of ``kind`` (a reconciliation is not an alarm)."""
    return [
        s
        for s in run.signals
        if s["kind"] == kind and s["status"] == "firing" and s["detector"] != "reconcile"
    ]


def _paging(signals: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter("info" if s["severity"] == "info" else "paging" for s in signals)


@dataclass
class Detection:
    """Detection of one kind of signal on the seeds of one change case."""

    runs: int = 0
    detected: int = 0
    delays_n: list[int] = field(default_factory=list)  # predictions served, change -> alarm
    delays_ms: list[int] = field(default_factory=list)  # event time, change -> alarm
    out_ms: list[int] = field(default_factory=list)  # change -> the batch that emitted it
    paged: int = 0  # runs with an alarm above info after the change (at first or later)
    resolved: int = 0
    resolve_ms: list[int] = field(default_factory=list)  # recovery -> resolved
    false_alarms: int = 0  # alarms before the change
    clean: int = 0  # predictions served before the change
    first_signal: Counter[str] = field(default_factory=Counter)
    severity: Counter[str] = field(default_factory=Counter)

    def add(self, run: Run, kind: str) -> None:
        assert run.change_ms is not None and run.change_at is not None
        self.runs += 1
        found = alarms(run, kind)
        before = [s for s in found if s["ms"] < run.change_ms]
        after = [s for s in found if s["ms"] >= run.change_ms]
        self.false_alarms += len(before)
        self.clean += run.change_at
        if not after:
            return
        first = after[0]
        self.detected += 1
        self.paged += any(s["severity"] != "info" for s in after)
        self.delays_n.append(first["n"] - run.change_at)
        self.delays_ms.append(first["ms"] - run.change_ms)
        self.out_ms.append(first["out_ms"] - run.change_ms)
        self.first_signal[first["signal"]] += 1
        self.severity[first["severity"]] += 1
        if run.recover_ms is not None:
            back = [
                s
                for s in run.signals
                if s["kind"] == kind and s["status"] == "resolved" and s["ms"] >= first["ms"]
            ]
            if back:
                self.resolved += 1
                self.resolve_ms.append(back[0]["ms"] - run.recover_ms)

    @property
    def rate(self) -> float:
        return 100.0 * self.detected / self.runs if self.runs else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "detected": self.detected,
            "paged": self.paged,
            "mean_delay_predictions": _mean(self.delays_n),
            "max_delay_predictions": max(self.delays_n, default=None),
            "mean_delay_min": _mean([d / 60_000 for d in self.delays_ms]),
            "max_delay_min": _r(max(self.delays_ms, default=math.nan) / 60_000),
            "mean_emitted_after_min": _mean([d / 60_000 for d in self.out_ms]),
            "resolved": self.resolved,
            "mean_resolve_min": _mean([d / 60_000 for d in self.resolve_ms]),
            "false_alarms_before_change": self.false_alarms,
            "predictions_before_change": self.clean,
            "first_signal": dict(self.first_signal),
            "first_severity": dict(self.severity),
        }


def _mean(xs: list[float] | list[int]) -> float | None:
    return round(float(np.mean(xs)), 3) if xs else None


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def _psi_detection(runs: list[Run], threshold: float, series: tuple[str, ...]) -> dict[str, Any]:
    """Windowed PSI on the same streams: detected when a window holding post-change
    predictions exceeds ``threshold`` on any of ``series``; alarms in windows wholly
    before the change are false."""
    detected, delays, false, clean = 0, [], 0, 0
    for r in runs:
        assert r.change_at is not None
        over = np.zeros(len(r.psi[series[0]]), bool)
        for name in series:
            over |= np.asarray(r.psi[name]) > threshold
        ends = (np.arange(len(over)) + 2) * PSI_WINDOW  # window k ends at (k + 2) * 1000
        pre = ends <= r.change_at
        false += int(over[pre].sum())
        clean += r.change_at
        hits = np.nonzero(over & ~pre)[0]
        if len(hits):
            detected += 1
            delays.append(int(ends[hits[0]]) - r.change_at)
    return {
        "runs": len(runs),
        "detected": detected,
        "mean_delay_predictions": _mean(delays),
        "false_alarms_before_change": false,
        "predictions_before_change": clean,
    }


def _psi_stationary(runs: list[Run], threshold: float) -> tuple[int, int]:
    """(alarms, windows) of the PSI on stationary streams, any series."""
    alarms_, windows = 0, 0
    for r in runs:
        names = list(r.psi)
        over = np.zeros(len(r.psi[names[0]]), bool)
        for name in names:
            over |= np.asarray(r.psi[name]) > threshold
        alarms_ += int(over.sum())
        windows += len(over)
    return alarms_, windows


# --- the suite ----------------------------------------------------------------------------


def _h(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / HOUR_MS:.2f} h"


def run(quick: bool, workers: int | None = None) -> Suite:
    """Detection rate, delay and false alarms of every label-free and liveness signal."""
    began = time.perf_counter()
    suite = cases(quick)
    if workers is None:
        workers = 1 if quick else min(2, _cpus())
    results = run_all(suite, workers)
    by_kind: dict[str, list[Case]] = {}
    for c in suite:
        by_kind.setdefault(c.kind, []).append(c)
    rows: list[Row] = []
    details: dict[str, Any] = {
        "cases": [{"name": c.name, "kind": c.kind, "seeds": c.seeds, **c.p} for c in suite]
    }
    key: dict[str, Any] = {}

    # 1. prediction drift, and the PSI baseline on the same streams
    drift_details = []
    for c in by_kind.get("drift", []):
        runs = results[c.name]
        d = Detection()
        for r in runs:
            d.add(r, "prediction_drift")
        rate_only = Detection()
        for r in runs:
            rr = Run(
                **{**asdict(r), "signals": [s for s in r.signals if s["signal"] == "positive_rate"]}
            )
            rate_only.add(rr, "prediction_drift")
        p = c.p
        shift = abs(p.get("rate_after", p.get("rate", 0)) - p.get("rate", 0))
        required = not p.get("regression") and "rate_after" in p and shift >= 0.1 - 1e-9
        series = ("value",) if p.get("regression") else ("rate", "score")
        psi = {f"{t:g}": _psi_detection(runs, t, series) for t in PSI_THRESHOLDS}
        drift_details.append(
            {
                "case": c.name,
                "adwin": d.as_dict(),
                "adwin_positive_rate_only": rate_only.as_dict(),
                "psi": psi,
            }
        )
        psi_text = ", ".join(f"PSI>{t}: {v['detected']}/{v['runs']}" for t, v in psi.items())
        if p.get("n_back"):  # the drift goes away: does its incident resolve?
            psi_text += f"; resolved {d.resolved}/{d.runs}"
            if d.resolve_ms:
                psi_text += f" after {np.mean(d.resolve_ms) / 60_000:.1f} min"
        rows.append(
            Row(
                f"prediction_drift detected: {c.name}",
                d.rate,
                "%",
                baseline=f"{d.runs} seeds; paging {d.paged}/{d.runs}; {psi_text}",
                target="100%" if required else "",
                met=(d.rate == 100.0) if required else None,
            )
        )
        rows.append(
            Row(
                f"prediction_drift delay: {c.name}",
                _mean(d.delays_n) or math.nan,
                "predictions",
                baseline=f"{np.mean(d.delays_ms) / 60_000:.1f} min event time"
                if d.delays_ms
                else "",
            )
        )
    details["prediction_drift"] = drift_details
    for points in (10, 20):
        group = [e for e in drift_details if _points(e["case"]) == points]
        if not group:
            continue
        runs_n = sum(e["adwin"]["runs"] for e in group)
        adwin_rate = 100.0 * sum(e["adwin"]["detected"] for e in group) / runs_n
        for t in PSI_THRESHOLDS:
            hit = sum(e["psi"][f"{t:g}"]["detected"] for e in group)
            rows.append(
                Row(
                    f"windowed PSI>{t:g} detected: {points}-point positive-rate shifts",
                    100.0 * hit / runs_n,
                    "%",
                    baseline=f"ADWIN (prediction_drift): {adwin_rate:.0f}%",
                    baseline_value=adwin_rate,
                    ratio=hit / runs_n / (adwin_rate / 100.0) if adwin_rate else None,
                )
            )

    # 2. stationary streams: false alarms of every kind
    stationary = [c for c in by_kind.get("stationary", []) if "labels_config" not in c.p]
    variants = [c for c in by_kind.get("stationary", []) if "labels_config" in c.p]
    fa_details = []
    variant_rows: list[Row] = []
    totals: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    served_total = 0
    for c in stationary + variants:
        runs = results[c.name]
        entry: dict[str, Any] = {
            "case": c.name,
            "served": sum(r.served for r in runs),
            "late": sum(r.late for r in runs),
        }
        if c in variants:
            entry["variant"] = True
            found = [s for r in runs for s in alarms(r, "labels_missing")]
            variant_rows.append(
                Row(
                    "labels_missing false alarms per million predictions, "
                    + c.name.removeprefix("stationary: "),
                    len(found) / entry["served"] * 1e6,
                    "/M",
                    baseline=f"{entry['served']:,} predictions; every alarm of any kind: details",
                )
            )
        else:
            served_total += entry["served"]
        for kind in KINDS:
            found = [s for r in runs for s in alarms(r, kind)]
            split = _paging(found)
            if c not in variants:
                totals[kind].update(split)
            entry[kind] = {
                "alarms": len(found),
                "info": split["info"],
                "paging": split["paging"],
                "per_million": round(len(found) / entry["served"] * 1e6, 3),
                "signals": dict(Counter(s["signal"] for s in found)),
            }
        entry["reconciliations"] = sum(
            1 for r in runs for s in r.signals if s["detector"] == "reconcile"
        )
        entry["label_increases"] = sum(len(r.increases) for r in runs)
        entry["psi_alarms"] = {f"{t:g}": _psi_stationary(runs, t)[0] for t in PSI_THRESHOLDS}
        entry["psi_windows"] = _psi_stationary(runs, PSI_THRESHOLDS[0])[1]
        fa_details.append(entry)
    details["stationary"] = fa_details
    fa_details = [e for e in fa_details if not e.get("variant")]
    for kind in KINDS:
        n_alarms = sum(totals[kind].values())
        fa = n_alarms / served_total * 1e6 if served_total else math.nan
        worst = max(fa_details, key=lambda e, k=kind: e[k]["alarms"]) if fa_details else None
        worst_text = (
            f"; most: {worst['case']} ({worst[kind]['alarms']})"
            if worst is not None and worst[kind]["alarms"]
            else ""
        )
        rows.append(
            Row(
                f"{kind} false alarms per million predictions, stationary",
                fa,
                "/M",
                baseline=f"{served_total:,} predictions, {len(stationary)} families; "
                f"{totals[kind]['info']} info, {totals[kind]['paging']} paging{worst_text}",
                target=f"< {FA_TARGET:g}",
                met=fa < FA_TARGET,
            )
        )
        key[f"fa_per_million_{kind}"] = round(fa, 3)
    rows += variant_rows
    psi_fa = {}
    windows = sum(e["psi_windows"] for e in fa_details)
    for t in PSI_THRESHOLDS:
        n_alarms = sum(e["psi_alarms"][f"{t:g}"] for e in fa_details)
        psi_fa[f"{t:g}"] = round(n_alarms / served_total * 1e6, 3) if served_total else None
        rows.append(
            Row(
                f"PSI>{t:g} (windows of {PSI_WINDOW:,}) false alarms per million, stationary",
                n_alarms / served_total * 1e6 if served_total else math.nan,
                "/M",
                baseline=f"{windows:,} windows",
            )
        )
    details["psi_stationary_per_million"] = psi_fa

    # 3-6. labels_missing, model_silent, input_quality, estimated_degradation
    for group, kind, unit_ms, unit in (
        ("labels", "labels_missing", HOUR_MS, "h"),
        ("silence", "model_silent", 1000, "s"),
        ("quality", "input_quality", 1000, "s"),
    ):
        group_details = []
        for c in by_kind.get(group, []):
            runs = results[c.name]
            d = Detection()
            for r in runs:
                d.add(r, kind)
            entry = {"case": c.name, **d.as_dict()}
            if group == "silence":
                entry["silences_s"] = [round((r.recover_ms - r.change_ms) / 1000, 1) for r in runs]  # type: ignore[operator]
                entry["usual_gap_s"] = [
                    s["before"].get("usual_gap_s") for r in runs for s in alarms(r, kind)
                ]
            group_details.append(entry)
            target, met = _target(group, c)
            delay = float(np.mean(d.delays_ms)) / unit_ms if d.delays_ms else math.nan
            resolve = float(np.mean(d.resolve_ms)) / unit_ms if d.resolve_ms else math.nan
            extra = ""
            if group == "silence":
                extra = f"; silence {np.mean(entry['silences_s']):,.0f} s"
            rows.append(
                Row(
                    f"{kind} detected: {c.name}",
                    d.rate,
                    "%",
                    baseline=f"{d.runs} seeds; resolved {d.resolved}/{d.runs}{extra}",
                    target=target,
                    met=(d.rate == 100.0 and d.resolved == d.runs)
                    if met == "all"
                    else (d.rate == 0.0 if met == "none" else None),
                )
            )
            if d.delays_ms:
                out = float(np.mean(d.out_ms)) / unit_ms
                rows.append(
                    Row(
                        f"{kind} delay: {c.name}",
                        delay,
                        unit,
                        baseline=f"{np.mean(d.delays_n):,.0f} predictions; out after "
                        f"{out:,.2f} {unit}; resolved {resolve:,.2f} {unit} after recovery",
                    )
                )
        details[kind] = group_details

    est_details = []
    for c in by_kind.get("estimated", []):
        runs = results[c.name]
        d = Detection()
        for r in runs:
            d.add(r, "estimated_degradation")
        leads, label_delays, label_found = [], [], 0
        for r in runs:
            assert r.change_ms is not None
            after = [t for t, _ in r.increases if t >= r.change_ms]
            if after:
                label_found += 1
                label_delays.append(after[0] - r.change_ms)
                est = [s for s in alarms(r, "estimated_degradation") if s["ms"] >= r.change_ms]
                if est:
                    leads.append(after[0] - est[0]["ms"])
        reconciled = Counter(
            s["status"] for r in runs for s in r.signals if s["detector"] == "reconcile"
        )
        entry = {
            "case": c.name,
            **d.as_dict(),
            "label_based_detected": label_found,
            "label_based_mean_delay_h": _mean([x / HOUR_MS for x in label_delays]),
            "lead_h": [round(x / HOUR_MS, 2) for x in leads],
            "reconciliations": dict(reconciled),
        }
        est_details.append(entry)
        scores_move = "confidence" in c.p
        rows.append(
            Row(
                f"estimated_degradation detected: {c.name}",
                d.rate,
                "%",
                baseline=f"{d.runs} seeds; label-based detected {label_found}/{d.runs}",
                target="100%" if scores_move else "",
                met=(d.rate == 100.0) if scores_move else None,
            )
        )
        if scores_move:
            lead = float(np.mean(leads)) / HOUR_MS if leads else math.nan
            rows.append(
                Row(
                    f"estimated_degradation lead over label-based: {c.name}",
                    lead,
                    "h",
                    baseline=f"fires {_h(_mean(d.delays_ms))} after the change, labels "
                    f"{_h(_mean(label_delays))}; reconciled {dict(reconciled)}",
                    target="> 0",
                    met=bool(leads) and min(leads) > 0,
                )
            )
    details["estimated_degradation"] = est_details
    demo_rows, details["estimated_on_the_demo"] = demo_signals.measure(quick)
    rows += demo_rows
    details["seconds"] = round(time.perf_counter() - began, 1)
    details["run_seconds"] = round(sum(r.seconds for runs in results.values() for r in runs), 1)
    details["key_figures"] = key
    details["text"] = key_text(details)
    return Suite(
        name="label-free signals quality",
        rows=rows,
        details=details,
        notes=[
            "ModelTrack driven as the detect step does (batches of 500 predictions or 500 s, "
            "lag 5 min); an alarm is a firing signal of any severity (info ones counted too); "
            "delays from the change to the alarm's event time; PSI: windows of 1,000 "
            "predictions against the first 1,000, positive rate (2 bins) or score/value "
            "deciles (10 bins), an alarm on either",
            f"stationary families: {len(stationary)} x {stationary[0].p['n']:,} predictions, "
            f"{STABLE_INVALID:.0%} dead-lettered, calibrated scores; details['text'] sums it up"
            if stationary
            else "",
        ],
    )


def _target(group: str, c: Case) -> tuple[str, str]:
    """(target text, "all" | "none" | "") of a labels/silence/quality case."""
    p = c.p
    if group == "labels":
        if p.get("shared", True) is False:
            return "", ""
        return "detected and resolved", "all"
    if group == "silence":
        if p["of"] != "p99" or p.get("arrivals") == "bursty":
            return "", ""
        floor_s = MonitorConfig().silence.min_gap_s
        # 10x the p99 gap of Poisson traffic: 10 ln(100) / rate seconds, at least one bin up
        if 10 * math.log(100) / p["rate"] < floor_s:
            return f"detected and resolved (10x p99 < min_gap_s {floor_s:g} s)", "all"
        return "detected and resolved", "all"
    if group == "quality":
        if p["invalid"] < MonitorConfig().input_quality.min_rate:
            return "below min_rate: none", "none"
        return "detected and resolved", "all"
    return "", ""


def key_text(details: dict[str, Any]) -> str:
    """A few lines of the key figures, for README."""
    lines = []
    drift = details.get("prediction_drift", [])
    tens = [e for e in drift if "->" in e["case"] and _points(e["case"]) in (10, 20)]
    if tens:
        det = sum(e["adwin"]["detected"] for e in tens)
        paged = sum(e["adwin"]["paged"] for e in tens)
        runs = sum(e["adwin"]["runs"] for e in tens)
        delays = [
            e["adwin"]["mean_delay_predictions"]
            for e in tens
            if e["adwin"]["mean_delay_predictions"]
        ]
        psi = {
            t: sum(e["psi"][t]["detected"] for e in tens if _points(e["case"]) == 10)
            for t in ("0.1", "0.25")
        }
        runs10 = sum(e["adwin"]["runs"] for e in tens if _points(e["case"]) == 10)
        lines.append(
            f"prediction_drift (ADWIN): {det}/{runs} shifts of 10-20 points in the positive rate "
            f"detected ({paged} paging), mean delay {min(delays):,.0f}-{max(delays):,.0f} "
            f"predictions; windowed PSI "
            f"on the same 10-point streams: {psi['0.1']}/{runs10} at 0.1, "
            f"{psi['0.25']}/{runs10} at 0.25"
        )
    stationary = [e for e in details.get("stationary", []) if not e.get("variant")]
    if stationary:
        served = sum(e["served"] for e in stationary)
        parts = [f"{k} {sum(e[k]['alarms'] for e in stationary)}" for k in KINDS]
        lines.append(f"false alarms in {served:,} stationary predictions: " + ", ".join(parts))
    for kind in ("labels_missing", "model_silent", "input_quality"):
        for e in details.get(kind, []):
            delay = e["mean_delay_min"]
            lines.append(
                f"{kind}: {e['case']}: {e['detected']}/{e['runs']} detected"
                + (
                    f", after {delay / 60:.2f} h"
                    if delay is not None and kind == "labels_missing"
                    else ""
                )
                + (
                    f", after {delay * 60:.0f} s"
                    if delay is not None and kind != "labels_missing"
                    else ""
                )
                + f", resolved {e['resolved']}/{e['runs']}"
            )
    for e in details.get("estimated_degradation", []):
        lead = f", {np.mean(e['lead_h']):.1f} h before the labels" if e["lead_h"] else ""
        lines.append(
            f"estimated_degradation: {e['case']}: {e['detected']}/{e['runs']} detected{lead} "
            f"(label-based {e['label_based_detected']}/{e['runs']})"
        )
    return "\n".join(lines)


def _points(name: str) -> int | None:
    if not name.startswith("positive rate "):
        return None
    parts = name.removeprefix("positive rate ").split("->")
    if len(parts) != 2:  # a drift and its return
        return None
    a, b = parts
    return round(abs(float(b.rstrip("%")) - float(a.rstrip("%"))))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the unit test)")
    parser.add_argument("--json", action="store_true", help="also print the details as JSON")
    args = parser.parse_args()
    suite = run(args.quick)
    print(markdown([suite.as_dict()]))
    print(suite.details["text"])
    if args.json:
        print(json.dumps(suite.details, indent=1))


if __name__ == "__main__":
    main()
