"""A model's health over time as inline SVG: error rate above, label coverage below, on
one axis of prediction event time in UTC, from exact per-bucket counts. Drawn on the
server from :class:`SeriesPoint` lists, so the page needs no JavaScript and no chart
library in the browser."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from streams.store.health import SERIES_BUCKET_MS, SeriesPoint

__all__ = ["ChartMark", "Panel", "health_chart", "sparkline", "time_ticks", "value_ticks"]

WIDTH = 960
HEIGHT = 430
LEFT = 74  # room for the y tick labels and the rotated axis title
RIGHT = 24
TOP = 34
PANEL_H = 140
GAP = 48  # between the panels: the upper panel's title
AXIS_H = 54  # below the lower panel: time ticks (two lines) and the axis title
MARKERS_UP_TO = 240  # points per line drawn with a hover dot; more would only clutter

_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_STEPS = (
    15 * _MINUTE,
    30 * _MINUTE,
    _HOUR,
    2 * _HOUR,
    3 * _HOUR,
    6 * _HOUR,
    12 * _HOUR,
    _DAY,
    2 * _DAY,
    7 * _DAY,
)
SEVERITY_COLOURS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#607d8b"}


@dataclass(frozen=True)
class ChartMark:
    """A vertical line at an alert's event time (its kind shows on hover)."""

    t_ms: int
    severity: str
    label: str


@dataclass(frozen=True)
class Panel:
    """Where one panel sits in the SVG and what its y axis spans."""

    title: str
    axis: str
    top: float
    ticks: tuple[float, ...]

    @property
    def y_max(self) -> float:
        return self.ticks[-1]

    def y(self, value: float) -> float:
        return self.top + PANEL_H * (1 - min(max(value / self.y_max, 0.0), 1.0))


def value_ticks(top: float, most: int = 5) -> list[float]:
    """Round y ticks from 0 to the first at or above ``top``: a step of 1, 2 or 5 times a
    power of ten, at most ``most`` steps (so 23 % gets 0, 10, 20, 30 %)."""
    if top <= 0 or not math.isfinite(top):
        top = 1.0
    power = 10 ** math.floor(math.log10(top / most))
    step = next(f * power for f in (1, 2, 5, 10) if top / (f * power) <= most * (1 + 1e-9))
    steps = max(1, math.ceil(top / step - 1e-9))
    return [round(k * step, 12) for k in range(steps + 1)]


def time_ticks(start_ms: int, end_ms: int, most: int = 8) -> list[int]:
    """Tick times on whole UTC quarter hours, hours or days, at most ``most`` of them."""
    span = max(end_ms - start_ms, 1)
    step = next((s for s in _STEPS if span / s <= most), None)
    if step is None:  # longer than the largest step allows: whole weeks, more of them
        step = _STEPS[-1] * math.ceil(span / (_STEPS[-1] * most))
    first = start_ms + (-start_ms) % step
    return list(range(first, end_ms + 1, step))


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _f(x: float) -> str:
    return f"{x:.1f}"


def _pct(value: float, step: float) -> str:
    """A percentage with as many decimals as ticks ``step`` apart need."""
    digits = 0 if step >= 0.01 - 1e-12 else 1 if step >= 0.001 - 1e-12 else 2
    return f"{value * 100:.{digits}f}%"


def health_chart(
    points: Sequence[SeriesPoint],
    *,
    marks: Sequence[ChartMark] = (),
    title: str = "",
) -> str:
    """The two-panel SVG of ``points`` (any order; drawn oldest first), or an empty string
    when there is nothing to draw (the page says so in words)."""
    points = sorted(points, key=lambda p: p.t_ms)
    if not points:
        return ""
    start = points[0].t_ms
    end = max(points[-1].t_ms + SERIES_BUCKET_MS, start + SERIES_BUCKET_MS)
    plot_w = WIDTH - LEFT - RIGHT

    def x(t_ms: float) -> float:
        return LEFT + plot_w * (t_ms - start) / (end - start)

    # each point stands for its bucket: drawn at the bucket's middle
    half = SERIES_BUCKET_MS / 2
    # a bucket without outcomes (labels not in yet) or predictions leaves a gap in its line
    rates = [r for p in points if (r := p.error_rate) is not None]
    highest = max(max(rates, default=0.0) * 1.1, 0.01)
    error = Panel(
        "error rate (outcomes by prediction time)", "error rate", TOP, tuple(value_ticks(highest))
    )
    coverage = Panel(
        "labelled so far (by prediction time)",
        "label coverage",
        TOP + PANEL_H + GAP,
        (0, 0.25, 0.5, 0.75, 1),
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'style="max-width: 100%; height: auto" '
        f'font-family="system-ui, sans-serif" font-size="12">',
        f"<title>{escape(title or 'error rate and label coverage over event time (UTC)')}</title>",
    ]
    ticks = time_ticks(start, end)
    for panel in (error, coverage):
        out.append(_panel_frame(panel, ticks, x))
    lower = coverage.top + PANEL_H
    for i, t in enumerate(ticks):
        stamp = _utc(t)
        day = i == 0 or _utc(ticks[i - 1]).date() != stamp.date()
        out.append(
            f'<text class="xtick" x="{_f(x(t))}" y="{_f(lower + 16)}" text-anchor="middle">'
            f"{stamp:%H:%M}"
            + (f' <tspan x="{_f(x(t))}" dy="14">{stamp:%Y-%m-%d}</tspan>' if day else "")
            + "</text>"
        )
    out.append(
        f'<text class="axis-title" x="{_f(LEFT + plot_w / 2)}" y="{HEIGHT - 4}" '
        f'text-anchor="middle" fill="#444">event time (UTC)</text>'
    )
    for mark in marks:
        if start <= mark.t_ms <= end:
            colour = SEVERITY_COLOURS.get(mark.severity, "#607d8b")
            mx = _f(x(mark.t_ms))
            out.append(
                f'<line class="mark" x1="{mx}" x2="{mx}" y1="{error.top}" y2="{lower}" '
                f'stroke="{colour}" stroke-dasharray="4 3" stroke-width="1.2">'
                f"<title>{escape(mark.label)} at {_utc(mark.t_ms):%Y-%m-%d %H:%M} UTC</title>"
                "</line>"
            )
    out += _line(
        error,
        [(p.t_ms + half, p.error_rate) for p in points],
        x,
        "error",
        "#1565c0",
        lambda v: _pct(v, 0.001),
    )
    out += _line(
        coverage,
        [(p.t_ms + half, p.label_coverage) for p in points],
        x,
        "coverage",
        "#2e7d32",
        lambda v: _pct(v, 0.001),
    )
    out.append("</svg>")
    return "\n".join(out)


def _panel_frame(panel: Panel, ticks: Sequence[int], x: Callable[[float], float]) -> str:
    """The panel's box, horizontal grid with y labels, vertical grid at the time ticks,
    and its title and rotated y axis title."""
    right = WIDTH - RIGHT
    bottom = panel.top + PANEL_H
    parts = [
        f'<text class="panel-title" x="{LEFT}" y="{_f(panel.top - 10)}" font-weight="600" '
        f'fill="#222">{escape(panel.title)}</text>',
        f'<rect x="{LEFT}" y="{panel.top}" width="{right - LEFT}" height="{PANEL_H}" '
        f'fill="#fafafa" stroke="#999"/>',
    ]
    step = panel.ticks[1] - panel.ticks[0]
    for value in panel.ticks:
        y = panel.y(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{right}" y1="{_f(y)}" y2="{_f(y)}" stroke="#e0e0e0"/>'
            f'<text class="ytick" x="{LEFT - 6}" y="{_f(y + 4)}" text-anchor="end" fill="#444">'
            f"{_pct(value, step)}</text>"
        )
    for t in ticks:
        tx = _f(x(t))
        parts.append(f'<line x1="{tx}" x2="{tx}" y1="{panel.top}" y2="{bottom}" stroke="#eeeeee"/>')
    mid = panel.top + PANEL_H / 2
    parts.append(
        f'<text class="axis-title" transform="translate(16 {_f(mid)}) rotate(-90)" '
        f'text-anchor="middle" fill="#444">{escape(panel.axis)}</text>'
    )
    return "".join(parts)


def _line(
    panel: Panel,
    values: Sequence[tuple[float, float | None]],
    x: Callable[[float], float],
    name: str,
    colour: str,
    label: Callable[[float], str],
) -> list[str]:
    """Polylines through the known values (a None, such as coverage not learnt yet,
    breaks the line), with a dot per point that names its value on hover."""
    runs: list[list[tuple[float, float]]] = [[]]
    for t, v in values:
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((t, v))
    out = []
    for run in runs:
        if not run:
            continue
        coords = " ".join(f"{_f(x(t))},{_f(panel.y(v))}" for t, v in run)
        out.append(
            f'<polyline class="series {name}" fill="none" stroke="{colour}" '
            f'stroke-width="1.8" stroke-linejoin="round" points="{coords}"/>'
        )
    shown = [tv for run in runs for tv in run]
    if len(shown) <= MARKERS_UP_TO:
        for t, v in shown:
            out.append(
                f'<circle class="dot {name}" cx="{_f(x(t))}" cy="{_f(panel.y(v))}" r="2.4" '
                f'fill="{colour}"><title>{_utc(int(t)):%Y-%m-%d %H:%M} UTC: '
                f"{label(v)}</title></circle>"
            )
    if not shown:
        out.append(
            f'<text class="no-data" x="{LEFT + (WIDTH - LEFT - RIGHT) / 2}" '
            f'y="{_f(panel.top + PANEL_H / 2)}" text-anchor="middle" fill="#777">'
            "not known yet</text>"
        )
    return out


def sparkline(values: Sequence[float], *, width: int = 48, height: int = 16) -> str:
    """A tiny line of the recent error rate for a table cell (empty for fewer than two
    values); its scale runs from 0 to its own highest value."""
    shown = [v for v in values if math.isfinite(v)]
    if len(shown) < 2:
        return ""
    top = max(max(shown), 1e-9)
    step = (width - 2) / (len(shown) - 1)
    coords = " ".join(
        f"{_f(1 + i * step)},{_f(height - 1 - (height - 2) * v / top)}" for i, v in enumerate(shown)
    )
    return (
        f' <svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="recent error rate, oldest first"><polyline fill="none" stroke="#1565c0" '
        f'stroke-width="1.3" points="{coords}"/></svg>'
    )
