"""The per-model plot of a replay: error rate and label coverage on one clock, with alerts.

Both series are binned by the prediction's event time (:class:`~streams.replay.backtest.
TimeBins`), so a degradation shows where the model started to go wrong and coverage shows
which predictions never got a label; the x axis spans the model's first to last
prediction. Alerts are drawn at their own event time (for error alerts, when the outcome
that tipped the detector was complete), so the gap between a rise and its alert is the
label delay plus the detection delay. A bin's rate comes with a 95% interval, and bins
with few outcomes are drawn faint and never set the y axis: one wrong outcome in an
otherwise empty hour is a 100% error rate that says nothing.

The binning and styling functions are pure (tested without drawing); :func:`model_figure`
draws with matplotlib's object API (no pyplot, no GUI backend), imported on first use so
a replay that writes no files does not load matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.replay.backtest import DAY_MS, HOUR_MS, MINUTE_MS, WIDTHS_MS, ModelSummary, TimeBins

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MIN_OUTCOMES",
    "AlertGroup",
    "Bin",
    "Point",
    "alert_groups",
    "coverage_points",
    "detector_levels",
    "display_width",
    "error_points",
    "error_top",
    "is_binary",
    "mean_interval",
    "model_figure",
    "rebin",
    "traffic_span",
    "wilson",
    "write_plot",
]

Z95 = 1.959963984540054
MIN_OUTCOMES = 10
"""A bin with fewer outcomes (predictions, for coverage) is drawn faint, without a band,
and does not set the y axis."""
PER_BIN = 50  # outcomes a bin should hold on average: bins are chosen coarser when fewer
MAX_DISPLAY_BINS = 120

DEGRADATION = "performance_degradation"
IMPROVEMENT = "performance_improvement"
CHANGE_KINDS = (DEGRADATION, IMPROVEMENT)
KIND_COLORS = {
    DEGRADATION: "tab:red",
    IMPROVEMENT: "tab:purple",
    "prediction_drift": "tab:orange",
    "labels_missing": "tab:brown",
    "model_silent": "tab:olive",
    "input_quality": "tab:pink",
    "estimated_degradation": "tab:cyan",
    "orphaned_model": "tab:gray",
    "model_limit": "black",
}
SPARE_COLORS = ("darkgoldenrod", "teal", "indigo", "crimson", "slategray")
FIRING_STYLE = {"change": "-", "signal": "-."}
RESOLVED_STYLE = ":"
RECONCILED_STYLE = "--"
ERROR_COLOR = "tab:blue"
COVERAGE_COLOR = "tab:green"
SPARSE_COLOR = "0.45"


# --- binning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bin:
    """The predictions made in ``[start_ms, end_ms)`` (the last bin ends at the last
    prediction, inclusive) and the outcomes of those that got a label."""

    start_ms: int
    end_ms: int
    predictions: int
    joined: int
    error_sum: float
    error_squares: float


def traffic_span(
    summary: ModelSummary, alerts: Sequence[dict[str, Any]] = (), expected: Sequence[int] = ()
) -> tuple[int, int]:
    """The model's first and last prediction: the x axis, so none of it is past the
    traffic. A model with no predictions spans whatever else it has; a single instant is
    widened to a minute, the least an axis can show."""
    if summary.first_ms is not None and summary.last_ms is not None:
        lo, hi = summary.first_ms, summary.last_ms
    else:
        times = [start for start, *_ in summary.series.rows()]
        times += [a["event_time_ms"] for a in alerts] + list(expected)
        lo, hi = min(times, default=0), max(times, default=0)
    if hi - lo < MINUTE_MS:
        centre = (lo + hi) // 2
        lo, hi = centre - MINUTE_MS // 2, centre + MINUTE_MS // 2
    return lo, hi


def display_width(span_ms: int, outcomes: int, finest_ms: int = WIDTHS_MS[0]) -> int:
    """The finest bin width (of :data:`~streams.replay.backtest.WIDTHS_MS`, no finer than
    the series holds) giving at most ``outcomes / PER_BIN`` bins (at least one, at most
    ``MAX_DISPLAY_BINS``) over ``span_ms``: sparse traffic gets wide bins, not spikes."""
    target = max(1, min(MAX_DISPLAY_BINS, outcomes // PER_BIN))
    for width in WIDTHS_MS:
        if width >= finest_ms and span_ms <= target * width:
            return width
    return WIDTHS_MS[-1]


def rebin(series: TimeBins, start_ms: int, end_ms: int, width_ms: int) -> list[Bin]:
    """The series in bins of ``width_ms`` (aligned to UTC multiples of it), clipped to
    ``[start_ms, end_ms]``; counts anything outside into the edge bins, so the totals are
    the series'. A width finer than the series holds is raised to it."""
    width = max(width_ms, series.width_ms)
    totals: dict[int, list[float]] = {}
    for at, predictions, joined, error_sum, squares in series.rows():
        key = min(max(at, start_ms), end_ms) // width
        into = totals.setdefault(key, [0, 0, 0.0, 0.0])
        into[0] += predictions
        into[1] += joined
        into[2] += error_sum
        into[3] += squares
    bins = [
        Bin(
            max(key * width, start_ms),
            min((key + 1) * width, end_ms),
            int(c[0]),
            int(c[1]),
            c[2],
            c[3],
        )
        for key, c in sorted(totals.items())
    ]
    if len(bins) > 1 and bins[-1].start_ms == bins[-1].end_ms == bins[-2].end_ms:
        # a prediction exactly on the last boundary: a bin of no width, merged back
        last, before = bins.pop(), bins.pop()
        bins.append(
            Bin(
                before.start_ms,
                before.end_ms,
                before.predictions + last.predictions,
                before.joined + last.joined,
                before.error_sum + last.error_sum,
                before.error_squares + last.error_squares,
            )
        )
    return bins


# --- rates and their uncertainty -------------------------------------------------------------


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sensible at 0, 1 and small n, where the
    normal one collapses to a point or leaves [0, 1]."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(successes / n, 0.0), 1.0)
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # the interval holds p; min/max only undo rounding at p = 0 or 1
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def mean_interval(n: int, total: float, squares: float, z: float = Z95) -> tuple[float, float]:
    """Normal interval of a mean error (regression) from its count, sum and sum of
    squares; one value says nothing of the spread, so its interval is unbounded."""
    if n <= 1:
        return -math.inf, math.inf
    mean = total / n
    variance = max(squares / n - mean * mean, 0.0) * n / (n - 1)
    half = z * math.sqrt(variance / n)
    return min(mean - half, mean), max(mean + half, mean)


def is_binary(bins: Sequence[Bin]) -> bool:
    """Whether every error is 0 or 1 (classification): for errors in [0, 1], x² = x only
    at 0 and 1, so the sums of errors and of their squares agree exactly then."""
    return all(abs(b.error_sum - b.error_squares) <= 1e-9 * max(1.0, b.error_sum) for b in bins)


@dataclass(frozen=True)
class Point:
    """One bin as drawn: its value, 95% interval and the count behind it."""

    start_ms: int
    end_ms: int
    count: int
    value: float
    lo: float
    hi: float

    @property
    def reliable(self) -> bool:
        return self.count >= MIN_OUTCOMES

    @property
    def centre_ms(self) -> float:
        return (self.start_ms + self.end_ms) / 2


def error_points(bins: Sequence[Bin], binary: bool) -> list[Point]:
    """Error rate (mean error) per bin with outcomes, by prediction time."""
    points = []
    for b in bins:
        if not b.joined:
            continue
        if binary:
            lo, hi = wilson(b.error_sum, b.joined)
        else:
            lo, hi = mean_interval(b.joined, b.error_sum, b.error_squares)
        points.append(Point(b.start_ms, b.end_ms, b.joined, b.error_sum / b.joined, lo, hi))
    return points


def coverage_points(bins: Sequence[Bin]) -> list[Point]:
    """Share of each bin's predictions that got a label, with its Wilson interval."""
    points = []
    for b in bins:
        if not b.predictions:
            continue
        joined = min(b.joined, b.predictions)
        lo, hi = wilson(joined, b.predictions)
        points.append(Point(b.start_ms, b.end_ms, b.predictions, joined / b.predictions, lo, hi))
    return points


def error_top(points: Sequence[Point], levels: Sequence[float] = (), binary: bool = True) -> float:
    """The error axis' upper limit: the reliable bins' intervals and the detectors'
    levels, with a margin. Sparse bins count only when there is nothing else."""
    values = [p.hi for p in points if p.reliable] or [p.value for p in points]
    finite = [v for v in [*values, *levels] if math.isfinite(v)]
    top = max(finite, default=0.0) * 1.1
    if top <= 0:
        return 0.05
    return min(top, 1.05) if binary else top


def detector_levels(
    alerts: Sequence[dict[str, Any]], start_ms: int, end_ms: int
) -> list[tuple[int, int, float]]:
    """(from ms, to ms, error rate) segments of what the detectors measured: each change's
    error rate before it, from the previous change, and the last change's rate after it,
    to the end; times clipped to the axis."""
    changes = sorted(
        (
            a
            for a in alerts
            if a.get("kind") in CHANGE_KINDS
            and isinstance((a.get("before") or {}).get("error_rate"), int | float)
            and isinstance((a.get("after") or {}).get("error_rate"), int | float)
        ),
        key=lambda a: (a["event_time_ms"], a.get("outcome_index") or 0),
    )
    segments: list[tuple[int, int, float]] = []
    since = start_ms
    for a in changes:
        at = min(max(a["event_time_ms"], start_ms), end_ms)
        segments.append((since, at, float(a["before"]["error_rate"])))
        since = at
    if changes:
        segments.append((since, end_ms, float(changes[-1]["after"]["error_rate"])))
    return [s for s in segments if s[1] > s[0]]


# --- alerts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertGroup:
    """The alerts of one legend entry: one kind, firing, resolved or reconciled."""

    key: str
    kind: str
    color: str
    linestyle: Any
    times_ms: tuple[int, ...]
    detectors: tuple[str, ...]

    @property
    def label(self) -> str:
        text = f"{self.key} \N{MULTIPLICATION SIGN}{len(self.times_ms)}"
        if self.kind in CHANGE_KINDS:
            text += f": {', '.join(self.detectors)}"
        return text


def alert_groups(alerts: Sequence[dict[str, Any]]) -> list[AlertGroup]:
    """One group per kind and status, each with its own colour and line style: increases
    and decreases apart, resolves dotted, reconciliations dashed. Ordered as
    first seen in event time, so the legend reads like the story."""
    spare = iter(SPARE_COLORS * 4)
    colors = dict(KIND_COLORS)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(alerts, key=lambda a: (a["event_time_ms"], a.get("outcome_index") or 0)):
        kind = a["kind"]
        if kind not in colors:
            colors[kind] = next(spare, "tab:gray")
        if a.get("status") == "resolved":
            key = f"{kind} resolved"
        elif a.get("detector") == "reconcile":
            key = f"{kind} reconciled"
        else:
            key = kind
        grouped.setdefault(key, []).append(a)
    groups = []
    for key, members in grouped.items():
        kind = members[0]["kind"]
        if key.endswith(" resolved"):
            style: Any = RESOLVED_STYLE
        elif key.endswith(" reconciled"):
            style = RECONCILED_STYLE
        else:
            style = FIRING_STYLE["change" if kind in CHANGE_KINDS else "signal"]
        groups.append(
            AlertGroup(
                key,
                kind,
                colors[kind],
                style,
                tuple(a["event_time_ms"] for a in members),
                tuple(sorted({str(a.get("detector")) for a in members})),
            )
        )
    return groups


# --- drawing ---------------------------------------------------------------------------------


def _x(ms: float) -> float:
    """Epoch ms as matplotlib's date number (days since its epoch, whatever that is set to)."""
    from matplotlib.dates import date2num

    return float(date2num(datetime.fromtimestamp(ms / 1000, tz=UTC)))


def _width_text(width_ms: int) -> str:
    if width_ms % DAY_MS == 0:
        return f"{width_ms // DAY_MS} d"
    if width_ms % HOUR_MS == 0:
        return f"{width_ms // HOUR_MS} h"
    return f"{width_ms // MINUTE_MS} min"


def _runs(points: Sequence[Point]) -> list[list[Point]]:
    """Reliable points in runs of adjacent bins: a line never bridges a gap or a sparse bin."""
    runs: list[list[Point]] = []
    previous: Point | None = None
    for p in points:
        if not p.reliable:
            previous = None
            continue
        if previous is not None and previous.end_ms == p.start_ms:
            runs[-1].append(p)
        else:
            runs.append([p])
        previous = p
    return runs


def _draw_series(ax: Axes, points: Sequence[Point], color: str, top: float) -> None:
    """Reliable bins as steps over their span with the 95% band; sparse bins as faint
    hollow markers sized by count (a triangle at the top when above the axis)."""
    for run in _runs(points):
        xs = [_x(t) for p in run for t in (p.start_ms, p.end_ms)]
        ax.plot(xs, [p.value for p in run for _ in (0, 1)], color=color, linewidth=1.6)
        ax.fill_between(
            xs,
            [max(p.lo, 0.0) for p in run for _ in (0, 1)],
            [min(p.hi, top) for p in run for _ in (0, 1)],
            color=color,
            alpha=0.2,
            linewidth=0,
        )
    sparse = [p for p in points if not p.reliable]
    for above in (False, True):
        chosen = [p for p in sparse if (p.value > top) is above]
        if chosen:
            ax.scatter(
                [_x(p.centre_ms) for p in chosen],
                [top if above else p.value for p in chosen],
                s=[8 + 40 * p.count / MIN_OUTCOMES for p in chosen],
                marker="^" if above else "o",
                facecolors="none",
                edgecolors=SPARSE_COLOR,
                alpha=0.6,
                clip_on=not above,
                zorder=3,
            )


def model_figure(
    summary: ModelSummary,
    alerts: Sequence[dict[str, Any]],
    expected: Sequence[int],
    combination: str | None,
) -> Figure:
    """Error rate with its band, the detectors' levels and the alerts above; label
    coverage beneath, on the same prediction-time axis; one legend entry per alert kind."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    start, end = traffic_span(summary, alerts, expected)
    series = summary.series
    outcomes = sum(joined for _, _, joined, _, _ in series.rows())
    width = display_width(end - start, outcomes, series.width_ms)
    bins = rebin(series, start, end, width)
    binary = is_binary(bins)
    errors = error_points(bins, binary)
    coverage = coverage_points(bins)
    levels = detector_levels(alerts, start, end)
    top = error_top(errors, [v for *_, v in levels], binary)

    fig = Figure(figsize=(12, 6.5), layout="constrained")
    upper, lower = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    name = summary.model_id if combination is None else f"{summary.model_id} ({combination})"
    fig.suptitle(name)
    upper.set_title(
        f"{summary.predictions:,} predictions, {summary.joined:,} outcomes; bins of "
        f"{_width_text(width)} by prediction time, alerts at their event time",
        fontsize="small",
        loc="left",
    )
    metric = "error rate" if binary else "mean error"
    handles: list[Any] = [Line2D([], [], color=ERROR_COLOR, linewidth=1.6, label=metric)]
    handles.append(
        Patch(
            color=ERROR_COLOR,
            alpha=0.2,
            label=f"95% interval ({'Wilson' if binary else 'normal'})",
        )
    )
    _draw_series(upper, errors, ERROR_COLOR, top)
    if any(not p.reliable for p in errors):
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markerfacecolor="none",
                markeredgecolor=SPARSE_COLOR,
                label=f"bins with < {MIN_OUTCOMES} outcomes",
            )
        )
    for i, (lo, hi, value) in enumerate(levels):
        upper.hlines(value, _x(lo), _x(hi), color="0.2", linewidth=1.0, linestyle="--")
        if i == 0:
            handles.append(
                Line2D([], [], color="0.2", linewidth=1.0, linestyle="--", label="detector level")
            )

    marks: list[tuple[int, str, Any]] = [(at, "black", (0, (2, 2))) for at in expected]
    if expected:
        handles.append(
            Line2D([], [], color="black", linestyle=(0, (2, 2)), label="expected change")
        )
    for group in alert_groups(alerts):
        marks += [(at, group.color, group.linestyle) for at in group.times_ms]
        handles.append(
            Line2D([], [], color=group.color, linestyle=group.linestyle, label=group.label)
        )
    for at, color, style in marks:
        if start <= at <= end:
            for ax in (upper, lower):
                ax.axvline(_x(at), color=color, linestyle=style, linewidth=1.2)
        else:  # outside the traffic: a triangle on the edge it lies beyond
            upper.plot(
                [_x(start if at < start else end)],
                [0.97],
                marker="<" if at < start else ">",
                color=color,
                transform=upper.get_xaxis_transform(),
                clip_on=False,
            )

    upper.set_ylabel(f"{metric} (by prediction time)")
    upper.set_ylim(0, top)
    upper.grid(alpha=0.3)
    if not errors:
        upper.text(0.5, 0.5, "no outcomes", transform=upper.transAxes, ha="center", va="center")
    elif not any(p.reliable for p in errors):
        upper.text(
            0.5,
            0.9,
            f"every bin has fewer than {MIN_OUTCOMES} outcomes",
            transform=upper.transAxes,
            ha="center",
            color=SPARSE_COLOR,
        )

    _draw_series(lower, coverage, COVERAGE_COLOR, 1.0)
    lower.set_ylim(0, 1.05)
    lower.set_yticks([0, 0.5, 1])
    lower.set_ylabel("label coverage")
    lower.set_xlabel("prediction event time (UTC)")
    lower.grid(alpha=0.3)
    lower.set_xlim(_x(start), _x(end))
    locator = AutoDateLocator(tz=UTC)
    lower.xaxis.set_major_locator(locator)
    lower.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return fig


def write_plot(
    summary: ModelSummary,
    alerts: Sequence[dict[str, Any]],
    expected: Sequence[int],
    combination: str | None,
    path: Path,
) -> None:
    """Draw :func:`model_figure` to a PNG at ``path``."""
    fig = model_figure(summary, alerts, expected, combination)
    fig.savefig(path, format="png", dpi=100)
    fig.clear()
