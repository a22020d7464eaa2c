"""The replay's per-model plot: binning by prediction time, uncertainty, weighting and the
figure's structure (read from matplotlib objects, not from pixels)."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.collections import PathCollection
from matplotlib.dates import date2num
from matplotlib.figure import Figure

from detectors.config import DetectorSettings
from streams.dev.simulate import build_scenario
from streams.engine.join_step import InputRecord
from streams.engine.rules import InputRules
from streams.replay.backtest import (
    DAY_MS,
    HOUR_MS,
    MAX_BINS,
    MINUTE_MS,
    WIDTHS_MS,
    Backtest,
    ModelSummary,
    TimeBins,
    expand_sweeps,
)
from streams.replay.plots import (
    MIN_OUTCOMES,
    Bin,
    Point,
    alert_groups,
    coverage_points,
    detector_levels,
    display_width,
    error_points,
    error_top,
    is_binary,
    mean_interval,
    model_figure,
    rebin,
    traffic_span,
    wilson,
)

T = int(datetime(2026, 11, 19, 12, tzinfo=UTC).timestamp() * 1000)

times = st.integers(min_value=T - 400 * DAY_MS, max_value=T + 400 * DAY_MS)
events = st.lists(st.tuples(times, st.booleans(), st.sampled_from([0.0, 1.0, 0.25, 3.5])))


def fill(series: TimeBins, rows: list[tuple[int, bool, float]]) -> None:
    """Count each (prediction time, labelled, error) as the backtest does."""
    for at, labelled, error in rows:
        c = series.slot(at)
        c[0] += 1
        if labelled:
            c[1] += 1
            c[2] += error
            c[3] += error * error


# --- the series the backtest keeps -----------------------------------------------------------


@given(events)
def test_time_bins_keep_every_count_in_the_bin_of_its_prediction_time(rows) -> None:
    series = TimeBins()
    fill(series, rows)
    width = series.width_ms
    assert width in WIDTHS_MS
    assert len(series.bins) <= MAX_BINS or width == WIDTHS_MS[-1]
    # the same events grouped afresh at the final width: coarsening merged exactly
    expected: dict[int, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for at, labelled, error in rows:
        e = expected[at // width * width]
        e[0] += 1
        e[1] += labelled
        e[2] += error if labelled else 0.0
        e[3] += error * error if labelled else 0.0
    got = {start: [made, joined, s, q] for start, made, joined, s, q in series.rows()}
    assert got.keys() == expected.keys()
    for start, values in got.items():
        assert values == pytest.approx(expected[start])


def test_time_bins_stay_fine_over_a_week_and_bounded_over_years() -> None:
    week = TimeBins()
    fill(week, [(T + i * 5 * MINUTE_MS, True, 0.0) for i in range(7 * 288)])
    assert week.width_ms == 5 * MINUTE_MS
    years = TimeBins()
    fill(years, [(T + i * HOUR_MS, False, 0.0) for i in range(3 * 365 * 24)])
    assert len(years.bins) <= MAX_BINS and years.width_ms == DAY_MS


# --- rebinning for display -------------------------------------------------------------------


@given(events, st.sampled_from(WIDTHS_MS))
def test_rebin_keeps_the_counts_and_never_passes_the_traffic(rows, width) -> None:
    series = TimeBins()
    fill(series, rows)
    start = min((at for at, *_ in rows), default=T)
    end = max((at for at, *_ in rows), default=T)
    bins = rebin(series, start, end, width)
    assert sum(b.predictions for b in bins) == len(rows)
    assert sum(b.joined for b in bins) == sum(labelled for _, labelled, _ in rows)
    assert sum(b.error_sum for b in bins) == pytest.approx(
        sum(e for _, labelled, e in rows if labelled)
    )
    for b in bins:
        assert start <= b.start_ms <= b.end_ms <= end
        assert b.end_ms - b.start_ms <= max(width, series.width_ms)
    assert all(a.end_ms <= b.start_ms for a, b in zip(bins, bins[1:], strict=False))


def test_rebin_merges_a_prediction_on_the_last_boundary_into_the_last_bin() -> None:
    series = TimeBins()
    fill(series, [(T, True, 1.0), (T + 30 * MINUTE_MS, True, 0.0), (T + HOUR_MS, True, 0.0)])
    bins = rebin(series, T, T + HOUR_MS, HOUR_MS)
    assert [(b.start_ms, b.end_ms, b.predictions) for b in bins] == [(T, T + HOUR_MS, 3)]


@given(
    st.integers(min_value=0, max_value=60 * DAY_MS),
    st.integers(min_value=0, max_value=10**6),
)
def test_display_width_gives_bins_that_hold_enough_outcomes(span, outcomes) -> None:
    width = display_width(span, outcomes)
    assert width in WIDTHS_MS
    bins = math.ceil(span / width)
    if width != WIDTHS_MS[-1]:
        assert bins <= max(1, min(120, outcomes // 50))
    # more outcomes never coarsen the bins
    assert display_width(span, outcomes * 2) <= width


def test_display_width_never_goes_finer_than_the_series() -> None:
    assert display_width(HOUR_MS, 10**6, finest_ms=15 * MINUTE_MS) == 15 * MINUTE_MS


# --- uncertainty ----------------------------------------------------------------------------


@given(
    st.integers(min_value=1, max_value=10**6).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n))
    )
)
def test_wilson_band_contains_the_rate_within_zero_and_one(nk) -> None:
    n, k = nk
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    # four times the outcomes, the same rate: a narrower band
    lo4, hi4 = wilson(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


def test_wilson_matches_published_intervals() -> None:
    # Newcombe (1998), Statistics in Medicine 17, table I: 0/10 and 5/10 (rounded)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


# errors as they come: up to a hundred, to a millionth (no subnormal squares)
@given(
    st.lists(
        st.floats(min_value=0, max_value=100).map(lambda v: round(v, 6)), min_size=2, max_size=50
    )
)
def test_mean_interval_is_the_normal_interval_around_the_mean(values) -> None:
    n = len(values)
    lo, hi = mean_interval(n, sum(values), sum(v * v for v in values))
    mean = statistics.fmean(values)
    assert lo <= mean <= hi
    # the variance behind the half width is the sample variance, up to the rounding of a
    # sum of squares (relative to the squares, not to the variance: hence the tolerance)
    variance = ((hi - lo) / 2 / 1.959963984540054) ** 2 * n
    scale = max(v * v for v in values)
    assert variance == pytest.approx(statistics.variance(values), rel=1e-6, abs=1e-12 * scale)


def test_one_value_has_no_spread_to_show() -> None:
    assert mean_interval(1, 3.0, 9.0) == (-math.inf, math.inf)


def test_is_binary_tells_classification_errors_from_regression_ones() -> None:
    def bins(errors: list[float]) -> list[Bin]:
        return [Bin(T, T + 1, 1, 1, e, e * e) for e in errors]

    assert is_binary(bins([0.0, 1.0, 1.0, 0.0]))
    assert is_binary([Bin(T, T + 1, 2000, 1000, 300.0, 300.0)])
    assert not is_binary(bins([0.0, 0.5]))
    assert not is_binary(bins([2.0]))


def point(count: int, value: float, start: int = T) -> Point:
    lo, hi = wilson(value * count, count)
    return Point(start, start + HOUR_MS, count, value, lo, hi)


def test_a_bin_of_one_outcome_does_not_set_the_error_axis() -> None:
    steady = [point(200, 0.05, T + i * HOUR_MS) for i in range(10)]
    spike = point(1, 1.0, T + 10 * HOUR_MS)
    assert not spike.reliable and all(p.reliable for p in steady)
    top = error_top([*steady, spike])
    assert max(p.hi for p in steady) < top < 0.2
    # only sparse bins: they are all there is, so they set it (capped for rates)
    assert error_top([spike]) == 1.05
    assert error_top([point(3, 0.0)]) == 0.05  # nothing above zero still shows an axis
    assert error_top(steady, [0.5]) == pytest.approx(0.55)  # a detector level is shown


def test_coverage_points_are_shares_of_predictions_with_a_band() -> None:
    bins = [Bin(T, T + HOUR_MS, 40, 30, 3.0, 3.0), Bin(T + HOUR_MS, T + 2 * HOUR_MS, 0, 0, 0, 0)]
    (p,) = coverage_points(bins)
    assert (p.count, p.value) == (40, 0.75) and p.lo < 0.75 < p.hi
    (e,) = error_points(bins, binary=True)
    assert (e.count, e.value) == (30, 0.1)


# --- detector levels and alert styles --------------------------------------------------------


def change(at: int, kind: str, before: float, after: float, detector: str = "adwin") -> dict:
    return {
        "kind": kind,
        "detector": detector,
        "event_time_ms": at,
        "outcome_index": at // 1000,
        "status": "firing",
        "before": {"error_rate": before, "count": 400},
        "after": {"error_rate": after, "count": 60},
    }


def signal(at: int, kind: str, status: str = "firing", detector: str = "window") -> dict:
    return {
        "kind": kind,
        "detector": detector,
        "event_time_ms": at,
        "outcome_index": None,
        "status": status,
        "before": {"rate": 0.3},
        "after": {"rate": 0.5},
    }


def test_detector_levels_run_from_change_to_change_across_the_axis() -> None:
    alerts = [
        change(T + 2 * HOUR_MS, "performance_degradation", 0.05, 0.2),
        change(T + 6 * HOUR_MS, "performance_improvement", 0.21, 0.06),
        change(T + 50 * HOUR_MS, "performance_degradation", 0.06, 0.3),  # past the traffic
        signal(T + HOUR_MS, "prediction_drift"),  # no error rate: not a level
    ]
    levels = detector_levels(alerts, T, T + 10 * HOUR_MS)
    assert levels == [
        (T, T + 2 * HOUR_MS, 0.05),
        (T + 2 * HOUR_MS, T + 6 * HOUR_MS, 0.21),
        (T + 6 * HOUR_MS, T + 10 * HOUR_MS, 0.06),
    ]
    assert detector_levels([signal(T, "labels_missing")], T, T + HOUR_MS) == []


def test_each_kind_and_status_gets_its_own_entry_and_style() -> None:
    alerts = [
        change(T + 3 * HOUR_MS, "performance_degradation", 0.05, 0.2),
        change(T + 4 * HOUR_MS, "performance_degradation", 0.05, 0.3, "page_hinkley"),
        change(T + 5 * HOUR_MS, "performance_improvement", 0.3, 0.05),
        signal(T + HOUR_MS, "labels_missing"),
        signal(T + 2 * HOUR_MS, "labels_missing", "resolved"),
        signal(T + 2 * HOUR_MS, "estimated_degradation"),
        signal(T + 7 * HOUR_MS, "estimated_degradation", detector="reconcile"),
        signal(T + 8 * HOUR_MS, "some_future_kind"),
    ]
    groups = alert_groups(alerts)
    assert [g.key for g in groups] == [
        "labels_missing",
        "labels_missing resolved",
        "estimated_degradation",
        "performance_degradation",
        "performance_improvement",
        "estimated_degradation reconciled",
        "some_future_kind",
    ]
    styles = [(g.color, str(g.linestyle)) for g in groups]
    assert len(set(styles)) == len(styles)
    by_key = {g.key: g for g in groups}
    assert by_key["labels_missing resolved"].linestyle == ":"
    assert by_key["labels_missing resolved"].color == by_key["labels_missing"].color
    up, down = by_key["performance_degradation"], by_key["performance_improvement"]
    assert up.color != down.color
    assert up.label == "performance_degradation ×2: adwin, page_hinkley"
    assert up.times_ms == (T + 3 * HOUR_MS, T + 4 * HOUR_MS)


# --- the figure ------------------------------------------------------------------------------


def hours_of_traffic(
    hours: int, per_hour: int, rate: float, *, start: int = T
) -> tuple[ModelSummary, list[tuple[int, bool, float]]]:
    """``per_hour`` predictions an hour, all labelled, ``rate`` of them wrong."""
    rows = []
    wrong_every = round(1 / rate) if rate else 0
    for h in range(hours):
        for i in range(per_hour):
            error = 1.0 if wrong_every and i % wrong_every == 0 else 0.0
            rows.append((start + h * HOUR_MS + i * (HOUR_MS // per_hour), True, error))
    return summary_of(rows), rows


def summary_of(rows: list[tuple[int, bool, float]], model_id: str = "m") -> ModelSummary:
    s = ModelSummary(model_id)
    fill(s.series, rows)
    s.predictions = len(rows)
    s.joined = sum(labelled for _, labelled, _ in rows)
    s.first_ms = min(at for at, *_ in rows)
    s.last_ms = max(at for at, *_ in rows)
    return s


def legend_labels(fig: Figure) -> list[str]:
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


def x_of(ms: int) -> float:
    return float(date2num(datetime.fromtimestamp(ms / 1000, tz=UTC)))


def test_the_figure_has_two_panels_on_one_clock_clipped_to_the_traffic() -> None:
    s, _ = hours_of_traffic(24, 100, 0.05)
    alerts = [
        change(T + 10 * HOUR_MS, "performance_degradation", 0.05, 0.2),
        change(T + 30 * HOUR_MS, "performance_improvement", 0.2, 0.05),  # after the last
        signal(T + 12 * HOUR_MS, "labels_missing"),
        signal(T + 14 * HOUR_MS, "labels_missing", "resolved"),
        signal(T - 2 * HOUR_MS, "prediction_drift"),  # before the first
    ]
    fig = model_figure(s, alerts, [T + 9 * HOUR_MS], "default")
    upper, lower = fig.axes
    assert upper.get_shared_x_axes().joined(upper, lower)
    lo, hi = x_of(s.first_ms or 0), x_of(s.last_ms or 0)
    assert lower.get_xlim() == pytest.approx((lo, hi))
    assert upper.get_xlim() == lower.get_xlim()
    # nothing drawn in data coordinates lies past the traffic
    for ax in (upper, lower):
        for line in ax.get_lines():
            if line.get_transform() == ax.transData:
                xs = [float(x) for x in line.get_xdata()]
                assert all(lo - 1e-9 <= x <= hi + 1e-9 for x in xs)
    assert lower.get_ylim() == (0, 1.05)
    labels = legend_labels(fig)
    for kind in ("performance_degradation", "performance_improvement", "prediction_drift"):
        assert sum(label.split(" ")[0] == kind for label in labels) == 1, labels
    assert sum(label.startswith("labels_missing ×") for label in labels) == 1
    assert sum(label.startswith("labels_missing resolved") for label in labels) == 1
    assert "expected change" in labels and "detector level" in labels
    assert labels[0] == "error rate"


def test_a_bin_of_one_outcome_does_not_set_the_figures_y_axis() -> None:
    _, rows = hours_of_traffic(24, 100, 0.05)
    # one labelled prediction, wrong, alone in its bin between two busy days
    lone = [(T + 36 * HOUR_MS, True, 1.0)]
    _, more = hours_of_traffic(24, 100, 0.05, start=T + 48 * HOUR_MS)
    s = summary_of(rows + lone + more)
    fig = model_figure(s, [], [], None)
    upper = fig.axes[0]
    assert upper.get_ylim()[1] < 0.2
    assert f"bins with < {MIN_OUTCOMES} outcomes" in legend_labels(fig)
    # the lone bin is still drawn: a faint marker pinned at the top of the axis
    (marker,) = [c for c in upper.collections if isinstance(c, PathCollection)]
    (xy,) = marker.get_offsets()
    assert xy[1] == pytest.approx(upper.get_ylim()[1])
    assert x_of(T + 36 * HOUR_MS) - 1 < xy[0] < x_of(T + 36 * HOUR_MS) + 1


def test_regression_errors_are_a_mean_with_a_normal_interval() -> None:
    rows = [(T + i * MINUTE_MS, True, float(i % 7)) for i in range(3000)]
    fig = model_figure(summary_of(rows), [], [], None)
    labels = legend_labels(fig)
    assert labels[:2] == ["mean error", "95% interval (normal)"]
    assert fig.axes[0].get_ylim()[1] > 3.0  # not capped like a rate


def test_a_model_with_no_outcomes_or_no_traffic_still_plots() -> None:
    s = summary_of([(T + i * MINUTE_MS, False, 0.0) for i in range(100)])
    fig = model_figure(s, [], [], None)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["no outcomes"]
    assert traffic_span(ModelSummary("empty")) == (-MINUTE_MS // 2, MINUTE_MS // 2)
    fig = model_figure(ModelSummary("empty"), [], [], None)
    assert len(fig.axes) == 2


# --- a replay, binned by prediction time ------------------------------------------------------


@pytest.fixture(scope="module")
def replayed() -> tuple[dict[str, ModelSummary], Any]:
    scenario = build_scenario(models=2, predictions_per_model=3000, degraded=1, seed=11)
    backtest = Backtest(
        expand_sweeps(DetectorSettings(), []),
        partitions=2,
        ttl_ms=7 * DAY_MS,
        rules=InputRules(lag_ms=300_000),
    )
    topics = {"p": "predictions", "g": "ground-truth"}
    backtest.feed(
        [
            InputRecord(kind, topics[kind], 0, offset, None, orjson.dumps(event), 0)
            for offset, (kind, event) in enumerate(scenario.events)
        ]
    )
    return backtest.finish().models, scenario


def test_the_replay_bins_outcomes_by_their_predictions_time(replayed) -> None:
    models, scenario = replayed
    (spec,) = scenario.degraded
    for model_id, s in models.items():
        width = s.series.width_ms
        made = Counter(
            e["timestamp"] // width * width
            for kind, e in scenario.events
            if kind == "p" and e["model_id"] == model_id
        )
        rows = s.series.rows()
        assert {start: n for start, n, *_ in rows} == made
        assert sum(joined for _, _, joined, _, _ in rows) == s.joined
        assert all(joined <= n for _, n, joined, _, _ in rows)
    # the degraded model's error rate steps up at the change, in the bins of the
    # predictions made after it (by label time, the step would be smeared over hours)
    s = models[spec.model_id]
    bins = rebin(s.series, s.first_ms or 0, s.last_ms or 0, HOUR_MS)
    change_at = spec.change_at_ms or 0
    before = [b for b in bins if b.end_ms <= change_at]
    after = [b for b in bins if b.start_ms >= change_at]
    rate_before = sum(b.error_sum for b in before) / sum(b.joined for b in before)
    rate_first_after = sum(b.error_sum for b in after[:2]) / sum(b.joined for b in after[:2])
    assert rate_first_after > 2 * rate_before
