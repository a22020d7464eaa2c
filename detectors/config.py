"""Detector settings: defaults, per-model overrides, validation and a fingerprint.

Settings come from one TOML or YAML file. ``defaults`` applies to every model; a section
under ``models`` overrides it field by field, so a model that sets only ``adwin.delta``
keeps every other default::

    [defaults]
    task = "classification"        # optional; inferred from the first outcomes when absent

    [defaults.adwin]
    enabled = true
    delta = 0.002                  # confidence, in (0, 1); smaller = fewer false alarms
    clock = 32
    max_buckets = 5                # >= 2
    min_window_length = 5
    grace_period = 10

    [defaults.page_hinkley]
    enabled = true
    min_instances = 30
    delta = 0.01                   # tolerated drift of the error, >= 0
    threshold = 150                # > 0; larger = fewer, later alarms
    alpha = 1.0                    # forgetting factor, in (0, 1]; 1 = none
    mode = "up"                    # "up" (error increases), "down" or "both"
    after_window = 100             # values reported as "after" when it fires

    [defaults.error_clip]           # regression errors only; classification errors are 0/1
    enabled = true
    factor = 5.0                   # clip at factor x the robust scale; >= 2
    warmup = 100                   # nonzero errors before clipping starts; >= 10
    # max_error = 1000.0           # optional absolute bound, > 0; applies from the first error

    [models.fraud]
    task = "regression"

    [models.fraud.adwin]
    delta = 0.0005

The defaults meet the targets of ``bench/quality.py`` with margin: every increase of the
error rate by 5 points or more detected, and fewer than one false alarm per million
outcomes on stationary streams (see :class:`PageHinkleyConfig` for the numbers).

The YAML form has the same shape (``defaults: {adwin: {delta: 0.002}}``). Every key and
value is checked when the file is read, and the dataclasses check themselves again on
construction, so a bad setting fails at startup with a message naming its dotted key,
never mid-stream.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from detectors.exceptions import DetectorSettingsError

__all__ = [
    "AdwinConfig",
    "DetectorSettings",
    "ErrorClipConfig",
    "EstimatedConfig",
    "FeatureDriftConfig",
    "InputQualityConfig",
    "LabelsConfig",
    "MonitorConfig",
    "PageHinkleyConfig",
    "PageHinkleyMode",
    "PredictionDriftConfig",
    "SchemaChangeConfig",
    "SilenceConfig",
    "Task",
    "VersionRegressionConfig",
    "apply_overrides",
    "load_detector_settings",
    "parse_detector_settings",
]

Task = Literal["classification", "regression"]
PageHinkleyMode = Literal["up", "down", "both"]

TASKS: tuple[str, ...] = get_args(Task)
PAGE_HINKLEY_MODES: tuple[str, ...] = get_args(PageHinkleyMode)

_FINGERPRINT_VERSION = "watchkeeper.detectors.config/1"
_SECTION_ALIASES = {"ph": "page_hinkley"}


def _describe(value: object) -> str:
    text = f"got {value!r} ({type(value).__name__})"
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return text
        return text + "; a quoted number is a string (YAML also reads 5e-4 as one: write 5.0e-4)"
    return text


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise DetectorSettingsError(key, f"must be true or false, {_describe(value)}")
    return value


def _int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DetectorSettingsError(key, f"must be an integer >= {minimum}, {_describe(value)}")
    if value < minimum:
        raise DetectorSettingsError(key, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _float(key: str, value: object, low: float, high: float, interval: str) -> float:
    """Check ``value`` lies in ``interval``; ``low``/``high`` are inclusive bounds of it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise DetectorSettingsError(key, f"must be a number in {interval}, {_describe(value)}")
    number = float(value)
    open_low, open_high = interval.startswith("("), interval.endswith(")")
    inside = (
        math.isfinite(number)
        and (low < number if open_low else low <= number)
        and (number < high if open_high else number <= high)
    )
    if not inside:
        raise DetectorSettingsError(key, f"must be a number in {interval}, got {value!r}")
    return number


def _choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(choice) for choice in choices)
        raise DetectorSettingsError(key, f"must be one of {valid}, {_describe(value)}")
    return value


def _model_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise DetectorSettingsError("models", f"model ids must be non-empty strings, got {value!r}")
    return value


@dataclass(frozen=True)
class AdwinConfig:
    """Hyper-parameters of :class:`river.drift.ADWIN`, under river's names and defaults.

    river's ``delta=0.002`` already meets the false-alarm target: about 0.1 increase
    alarm per million outcomes on stationary 0/1 streams at 5-30 % error (20M outcomes
    per rate, ``bench/quality.py``), and it detects every change of +2 points or more
    within 20,000 outcomes. Smaller values trade delay for silence: 0.0002 raised no
    false alarm in 80M outcomes but detects about 25 % later.
    """

    enabled: bool = True
    delta: float = 0.002
    clock: int = 32
    max_buckets: int = 5
    min_window_length: int = 5
    grace_period: int = 10

    def __post_init__(self) -> None:
        _bool("adwin.enabled", self.enabled)
        # Normalise ints to floats so 1 and 1.0 give equal configs and fingerprints.
        object.__setattr__(self, "delta", _float("adwin.delta", self.delta, 0.0, 1.0, "(0, 1)"))
        _int("adwin.clock", self.clock, 1)
        # river 0.26's Rust ADWIN panics with 1: a BaseException that would kill the worker.
        _int("adwin.max_buckets", self.max_buckets, 2)
        _int("adwin.min_window_length", self.min_window_length, 1)
        _int("adwin.grace_period", self.grace_period, 0)


@dataclass(frozen=True)
class PageHinkleyConfig:
    """Hyper-parameters of :class:`river.drift.PageHinkley`, plus the "after" window size.

    ``mode`` defaults to ``"up"`` (river's default is ``"both"``): a rising error is the
    degradation worth paging for.

    ``threshold``, ``delta`` and ``alpha`` are not river's (50, 0.005, 0.9999): with those,
    Page-Hinkley raised 9, 25 and 60 false alarms per million outcomes on stationary
    streams at 5, 10 and 30 % error. Its statistic is an accumulated deviation, so its
    noise grows with the error's variance; with forgetting (``alpha < 1``) the running
    minimum stops following a stable stream and every return from a dip looks like a
    rise. Without forgetting, ``threshold=150`` and ``delta=0.01`` raised none in 20M
    outcomes per error rate (0.15 per million on ``|N(0, 1)|`` regression errors) and
    still catch every +5-point change, after ADWIN as a rule: ADWIN leads the bank, this
    test backs it up.
    """

    enabled: bool = True
    min_instances: int = 30
    delta: float = 0.01
    threshold: float = 150.0
    alpha: float = 1.0
    mode: PageHinkleyMode = "up"
    after_window: int = 100

    def __post_init__(self) -> None:
        inf = math.inf
        _bool("page_hinkley.enabled", self.enabled)
        _int("page_hinkley.min_instances", self.min_instances, 1)
        delta = _float("page_hinkley.delta", self.delta, 0.0, inf, "[0, inf)")
        threshold = _float("page_hinkley.threshold", self.threshold, 0.0, inf, "(0, inf)")
        alpha = _float("page_hinkley.alpha", self.alpha, 0.0, 1.0, "(0, 1]")
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "alpha", alpha)
        _choice("page_hinkley.mode", self.mode, PAGE_HINKLEY_MODES)
        _int("page_hinkley.after_window", self.after_window, 1)


@dataclass(frozen=True)
class ErrorClipConfig:
    """Bounds on regression errors, so one absurd label cannot poison a model's detectors.

    A label off by 1e6 (or 1e300) would otherwise make ADWIN and Page-Hinkley fire an
    "increase" at once and, worse, leave that value in their windows: ADWIN's variance
    estimate then dwarfs any later real change, blinding it for good. So each regression
    error is winsorised before any detector (or the error rate) sees it:

    - ``max_error`` (optional, > 0): an absolute bound, from the first error on. Set it when
      the target has a known range (a price never errs by more than 1e4).
    - the relative bound, when ``enabled``: ``factor`` times a robust running scale. The
      scale is the median of the 0.9-quantiles of the latest 9 blocks of ``warmup``
      nonzero errors each, taken over errors already clipped, so an outlier moves neither
      the bound nor the scale; it applies once the first block is complete (``warmup``
      nonzero errors). A real degradation stays visible: doubled errors pass under the
      bound, and a tenfold jump is cut to five times the old scale only until the scale
      follows it, within five blocks. ``factor``
      is 5, not 10: on |N(0, 1)| errors a single error clipped at 10x the scale still
      made ADWIN fire an "increase" for 12 of 400 outliers, at 5x for none of 600
      (``tests/unit/test_detectors_clipping.py`` has the scenario).

    Both are deterministic (no randomness, no clock) and the state pickles with the
    monitor. Classification errors (0/1) are never clipped; with ``task`` inferred, a
    model counts as regression from its first error other than 0 or 1. The monitor counts
    clipped errors (``ModelMonitor.clipped``). Set ``enabled = false`` to turn the
    relative bound off.
    """

    enabled: bool = True
    factor: float = 5.0
    warmup: int = 100
    max_error: float | None = None

    def __post_init__(self) -> None:
        _bool("error_clip.enabled", self.enabled)
        # below 2 the bound would cut ordinary errors, and the scale, taken over clipped
        # errors, could ratchet down
        factor = _float("error_clip.factor", self.factor, 2.0, math.inf, "[2, inf)")
        object.__setattr__(self, "factor", factor)
        # blocks of fewer than 10 would let a single outlier reach their 0.9-quantile
        _int("error_clip.warmup", self.warmup, 10)
        bound = self.max_error
        if bound == math.inf and not isinstance(bound, bool):
            # "no bound", as TOML (which has no null) can write it: one spelling, one fingerprint
            object.__setattr__(self, "max_error", None)
        elif bound is not None:
            bound = _float("error_clip.max_error", bound, 0.0, math.inf, "(0, inf]")
            object.__setattr__(self, "max_error", bound)


@dataclass(frozen=True)
class PredictionDriftConfig:
    """``prediction_drift``: a change in what the model predicts, before any label.

    ADWIN (river) runs on the prediction stream itself: for classification on the rate of
    ``positive_class`` and on the score; for regression on the prediction in units of the
    first ``warmup`` predictions' spread (its mean) and on the change between successive
    predictions (its spread). ADWIN, not a windowed PSI or KS test, because it needs no
    window size, keeps O(log n) memory, and detects every shift of 10 points in the
    positive rate (``bench/quality_signals.py``: 120 of 120, in 380-670 predictions),
    where PSI over windows of 1,000 against the first 1,000, at its usual 0.1
    threshold, caught 42 of 80 and at 0.25 none. (PSI reads a change in the score's
    shape better: 20/20 against ADWIN's 17/20 at confidence x0.85.) The spread of a
    regression model is ADWIN on differences of disjoint pairs: overlapping differences
    are correlated and raised 10 false alarms per million.

    ADWIN cuts its window soon after a change, when the part it keeps still holds values
    from before it; so the new level is measured over the ``confirm`` predictions after
    the detection, and the alert goes out then. Severity follows the size of the shift:
    below ``warning_shift`` (rate or score points; ``warning_std`` for regression, in
    reference standard deviations) it is ``info`` and pages nobody, from
    ``critical_shift`` (``critical_std``) it is ``critical``. A drift of ``warning`` or
    more resolves when every signal that drifted is measured back within less than
    ``warning_shift`` (``warning_std``) of its level before the drift, allowing two
    standard errors of the ``confirm`` predictions measured.
    """

    enabled: bool = True
    delta: float = 0.002
    warmup: int = 200
    confirm: int = 400
    positive_class: str = "1"
    warning_shift: float = 0.05
    critical_shift: float = 0.20
    warning_std: float = 0.5
    critical_std: float = 2.0

    def __post_init__(self) -> None:
        inf = math.inf
        _bool("prediction_drift.enabled", self.enabled)
        delta = _float("prediction_drift.delta", self.delta, 0.0, 1.0, "(0, 1)")
        object.__setattr__(self, "delta", delta)
        _int("prediction_drift.warmup", self.warmup, 32)
        _int("prediction_drift.confirm", self.confirm, 1)
        if not isinstance(self.positive_class, str) or not self.positive_class:
            raise DetectorSettingsError(
                "prediction_drift.positive_class",
                f"must be a non-empty string, {_describe(self.positive_class)}",
            )
        for name, high in (("shift", 1.0), ("std", inf)):
            warning = _float(
                f"prediction_drift.warning_{name}",
                getattr(self, f"warning_{name}"),
                0.0,
                high,
                "(0, 1]" if high == 1.0 else "(0, inf)",
            )
            critical = _float(
                f"prediction_drift.critical_{name}",
                getattr(self, f"critical_{name}"),
                0.0,
                high,
                "(0, 1]" if high == 1.0 else "(0, inf)",
            )
            if critical < warning:
                raise DetectorSettingsError(
                    f"prediction_drift.critical_{name}",
                    f"must be >= warning_{name} ({warning}), got {critical}",
                )
            object.__setattr__(self, f"warning_{name}", warning)
            object.__setattr__(self, f"critical_{name}", critical)


@dataclass(frozen=True)
class LabelsConfig:
    """``labels_missing``: predictions stop getting their labels, or get them much later.

    Predictions are counted in event-time windows of ``window_s``. Once the watermark is
    ``expected delay`` past a window's end, its coverage (the share of its predictions
    labelled within the expected delay) is final. The expected delay is
    ``expected_delay_s`` when set, else ``delay_factor`` x the 95th percentile of the delays
    observed (at least ``min_delay_s`` and one window), learned from ``warmup_labels``
    labels on. Windows are pooled until they hold ``min_predictions``.

    It fires when coverage falls below ``coverage_ratio`` x the model's usual coverage
    (or below ``min_coverage`` when set) by ``z`` binomial standard errors, or when the
    mean label delay grew ``delay_growth``-fold; it resolves when coverage is back to
    ``resolve_ratio`` x usual and the delay within ``delay_growth / 2`` of usual. The
    usual delay is the longest mean delay of recent healthy windows, forgotten by half in
    50 windows: labels that arrive in daily batches make the mean delay cycle each day,
    and that cycle is usual.
    """

    enabled: bool = True
    window_s: float = 3600.0
    expected_delay_s: float | None = None
    delay_factor: float = 2.0
    min_delay_s: float = 60.0
    warmup_labels: int = 200
    min_predictions: int = 100
    coverage_ratio: float = 0.5
    resolve_ratio: float = 0.8
    min_coverage: float | None = None
    z: float = 5.0
    delay_growth: float = 3.0

    def __post_init__(self) -> None:
        inf = math.inf
        _bool("labels.enabled", self.enabled)
        for name, low, interval in (
            ("window_s", 0.0, "(0, inf)"),
            ("delay_factor", 1.0, "[1, inf)"),
            ("min_delay_s", 0.0, "[0, inf)"),
            ("z", 0.0, "(0, inf)"),
            ("delay_growth", 1.0, "(1, inf)"),
        ):
            value = _float(f"labels.{name}", getattr(self, name), low, inf, interval)
            object.__setattr__(self, name, value)
        for name in ("coverage_ratio", "resolve_ratio"):
            value = _float(f"labels.{name}", getattr(self, name), 0.0, 1.0, "(0, 1]")
            object.__setattr__(self, name, value)
        if self.resolve_ratio < self.coverage_ratio:
            raise DetectorSettingsError(
                "labels.resolve_ratio",
                f"must be >= coverage_ratio ({self.coverage_ratio}), got {self.resolve_ratio}",
            )
        _int("labels.warmup_labels", self.warmup_labels, 10)
        _int("labels.min_predictions", self.min_predictions, 10)
        for name, high, interval in (
            ("expected_delay_s", inf, "(0, inf)"),
            ("min_coverage", 1.0, "(0, 1]"),
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _float(f"labels.{name}", value, 0.0, high, interval))


@dataclass(frozen=True)
class SilenceConfig:
    """``model_silent``: a model that was serving stops, while other models go on.

    A model's usual gap is the 99th percentile of its recent gaps between predictions,
    each gap weighted by its length (the gap that 99 % of the time is spent in shorter
    ones), in a decaying histogram so that it follows daily seasonality. By length, so
    that predictions in bursts do not hide the pauses between bursts. It is silent when no
    prediction came for ``factor`` x that gap, and at least ``min_gap_s``, in event time,
    judged from ``warmup`` gaps on. Not the mean: for Poisson traffic a gap of 10x the
    mean comes once in 22,000 predictions, far above the target of one false alarm per
    million; the weighted 99th percentile is 6.6x the mean there.
    """

    enabled: bool = True
    factor: float = 5.0
    min_gap_s: float = 30.0
    warmup: int = 100

    def __post_init__(self) -> None:
        _bool("silence.enabled", self.enabled)
        factor = _float("silence.factor", self.factor, 1.0, math.inf, "[1, inf)")
        object.__setattr__(self, "factor", factor)
        gap = _float("silence.min_gap_s", self.min_gap_s, 0.0, math.inf, "(0, inf)")
        object.__setattr__(self, "min_gap_s", gap)
        _int("silence.warmup", self.warmup, 10)


@dataclass(frozen=True)
class InputQualityConfig:
    """``input_quality``: the share of a model's prediction events that are dead-lettered
    (invalid) rises. ADWIN on 1 per invalid and 0 per valid event; a rise to a rate below
    ``min_rate`` is not reported."""

    enabled: bool = True
    delta: float = 0.002
    min_rate: float = 0.01
    confirm: int = 400  # events after a change that measure the new rate

    def __post_init__(self) -> None:
        _bool("input_quality.enabled", self.enabled)
        _int("input_quality.confirm", self.confirm, 1)
        delta = _float("input_quality.delta", self.delta, 0.0, 1.0, "(0, 1)")
        object.__setattr__(self, "delta", delta)
        rate = _float("input_quality.min_rate", self.min_rate, 0.0, 1.0, "[0, 1]")
        object.__setattr__(self, "min_rate", rate)


@dataclass(frozen=True)
class EstimatedConfig:
    """``estimated_degradation``: for classifiers with calibrated scores, the expected
    error of each prediction (``1 - score`` when it predicts the positive class, else
    ``score``, as in NannyML's CBPE) is watched by ADWIN, so a loss of confidence alerts
    before any label. A rise smaller than ``min_rise`` is not reported; the alert resolves
    when the expected error falls back. When the labels of ``reconcile_after``
    predictions made after the alert are in, an info alert compares the estimate with the
    error they show (``after.confirmed``); a label-based ``performance_degradation``
    follows when they confirm it."""

    enabled: bool = True
    delta: float = 0.002
    min_rise: float = 0.02
    reconcile_after: int = 500
    confirm: int = 100  # predictions that measure a rise ADWIN's figures leave unclear

    def __post_init__(self) -> None:
        _bool("estimated.enabled", self.enabled)
        _int("estimated.confirm", self.confirm, 1)
        delta = _float("estimated.delta", self.delta, 0.0, 1.0, "(0, 1)")
        object.__setattr__(self, "delta", delta)
        rise = _float("estimated.min_rise", self.min_rise, 0.0, 1.0, "[0, 1]")
        object.__setattr__(self, "min_rise", rise)
        _int("estimated.reconcile_after", self.reconcile_after, 10)


@dataclass(frozen=True)
class VersionRegressionConfig:
    """``version_changed`` and ``version_regression`` (:mod:`detectors.versions`): a new
    model version whose error is worse than the previous version's, compared on the
    period both serve (canary, A/B) or else before and after the switch. One-sided test
    (two-proportion z for 0/1 errors, else Welch's t) at ``z``, once both samples hold
    ``min_outcomes``, and only for a rise of ``min_effect`` points (0/1 errors) or to
    ``min_ratio`` x the old error. ``window``: outcomes compared at most per version;
    ``max_versions``: versions whose statistics are kept per model."""

    enabled: bool = True
    min_outcomes: int = 200
    z: float = 3.0
    min_effect: float = 0.02
    min_ratio: float = 1.25
    window: int = 1000
    max_versions: int = 4

    def __post_init__(self) -> None:
        _bool("version_regression.enabled", self.enabled)
        _int("version_regression.min_outcomes", self.min_outcomes, 10)
        window = _int("version_regression.window", self.window, 10)
        if window < self.min_outcomes:
            raise DetectorSettingsError(
                "version_regression.window",
                f"must be >= min_outcomes ({self.min_outcomes}), got {window!r}",
            )
        _int("version_regression.max_versions", self.max_versions, 2)
        z = _float("version_regression.z", self.z, 0.0, math.inf, "(0, inf)")
        object.__setattr__(self, "z", z)
        effect = _float("version_regression.min_effect", self.min_effect, 0.0, 1.0, "[0, 1]")
        object.__setattr__(self, "min_effect", effect)
        ratio = _float("version_regression.min_ratio", self.min_ratio, 1.0, math.inf, "[1, inf)")
        object.__setattr__(self, "min_ratio", ratio)


@dataclass(frozen=True)
class FeatureDriftConfig:
    """``feature_drift`` (:mod:`detectors.features`): a feature of the prediction events
    shifts. Each feature learns a reference from its first ``warmup`` values: a number's
    mean and standard deviation, a category's vocabulary (at most ``max_categories``).
    Then ADWIN runs on the value in reference standard deviations, or on 1 per category
    not in the vocabulary; a change is measured over the next ``confirm`` values and
    reported from ``warning_std`` (numbers) or ``warning_shift`` (share of unseen
    categories) on, ``critical`` from ``critical_std`` / ``critical_shift``. At most
    ``max_features`` features per model are watched, the first seen; values of others are
    counted (``features_dropped``). ``delta`` is ADWIN's, smaller than prediction_drift's:
    every watched feature is one more test."""

    enabled: bool = True
    delta: float = 0.0002
    warmup: int = 500
    confirm: int = 400
    max_features: int = 50
    max_categories: int = 200
    warning_std: float = 0.5
    critical_std: float = 2.0
    warning_shift: float = 0.05
    critical_shift: float = 0.20

    def __post_init__(self) -> None:
        _bool("feature_drift.enabled", self.enabled)
        delta = _float("feature_drift.delta", self.delta, 0.0, 1.0, "(0, 1)")
        object.__setattr__(self, "delta", delta)
        _int("feature_drift.warmup", self.warmup, 32)
        _int("feature_drift.confirm", self.confirm, 1)
        _int("feature_drift.max_features", self.max_features, 0)
        _int("feature_drift.max_categories", self.max_categories, 1)
        for name, high, interval in (("std", math.inf, "(0, inf)"), ("shift", 1.0, "(0, 1]")):
            warning = _float(
                f"feature_drift.warning_{name}", getattr(self, f"warning_{name}"), 0.0, high,
                interval,
            )  # fmt: skip
            critical = _float(
                f"feature_drift.critical_{name}", getattr(self, f"critical_{name}"), 0.0, high,
                interval,
            )  # fmt: skip
            if critical < warning:
                raise DetectorSettingsError(
                    f"feature_drift.critical_{name}",
                    f"must be >= warning_{name} ({warning}), got {critical}",
                )
            object.__setattr__(self, f"warning_{name}", warning)
            object.__setattr__(self, f"critical_{name}", critical)


@dataclass(frozen=True)
class SchemaChangeConfig:
    """``schema_change`` (:mod:`detectors.features`): the keys or value types of the
    features change. The first ``warmup`` events with features give the reference: keys
    present in at least ``min_presence`` of them must stay, and every key seen has its
    usual type. Then each ``window`` of events is judged: a required key present in fewer
    than ``share`` of them is removed, a new key present in more than ``share`` is added,
    a key whose values are of another type in more than ``share`` of them is retyped. A
    window that shows a change is judged again with the next one (both together), so one
    odd event or a change half way through a window gives one alert listing every key.
    At most ``max_keys`` keys are tracked per model."""

    enabled: bool = True
    warmup: int = 500
    window: int = 500
    min_presence: float = 0.9
    share: float = 0.5
    max_keys: int = 256

    def __post_init__(self) -> None:
        _bool("schema_change.enabled", self.enabled)
        _int("schema_change.warmup", self.warmup, 10)
        _int("schema_change.window", self.window, 10)
        _int("schema_change.max_keys", self.max_keys, 1)
        share = _float("schema_change.share", self.share, 0.0, 1.0, "(0, 1)")
        object.__setattr__(self, "share", share)
        presence = _float("schema_change.min_presence", self.min_presence, 0.0, 1.0, "(0, 1]")
        if presence <= share:
            raise DetectorSettingsError(
                "schema_change.min_presence", f"must be > share ({share}), got {presence}"
            )
        object.__setattr__(self, "min_presence", presence)


@dataclass(frozen=True)
class MonitorConfig:
    """Everything one model's monitor is built from; ``task=None`` means infer it."""

    task: Task | None = None
    adwin: AdwinConfig = field(default_factory=AdwinConfig)
    page_hinkley: PageHinkleyConfig = field(default_factory=PageHinkleyConfig)
    # a plain default (the config is immutable): a config pickled before this field
    # existed reads back with it
    error_clip: ErrorClipConfig = ErrorClipConfig()
    prediction_drift: PredictionDriftConfig = PredictionDriftConfig()
    labels: LabelsConfig = LabelsConfig()
    silence: SilenceConfig = SilenceConfig()
    input_quality: InputQualityConfig = InputQualityConfig()
    estimated: EstimatedConfig = EstimatedConfig()
    feature_drift: FeatureDriftConfig = FeatureDriftConfig()
    schema_change: SchemaChangeConfig = SchemaChangeConfig()
    version_regression: VersionRegressionConfig = VersionRegressionConfig()

    def __post_init__(self) -> None:
        if self.task is not None:
            _choice("task", self.task, TASKS)
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                article = "an" if cls.__name__[0] in "AEIOU" else "a"
                problem = f"must be {article} {cls.__name__}, {_describe(getattr(self, name))}"
                raise DetectorSettingsError(name, problem)

    def fingerprint(self) -> str:
        """Short hash of every field, stable across processes and Python versions.

        Stored next to checkpointed detector state, it tells a restarted worker whether
        that state was built with the settings now in force.
        """
        canonical = json.dumps(
            [_FINGERPRINT_VERSION, asdict(self)], sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DetectorSettings:
    """Default monitor settings plus the per-model ones, already merged over the defaults."""

    defaults: MonitorConfig = field(default_factory=MonitorConfig)
    models: Mapping[str, MonitorConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.defaults, MonitorConfig):
            problem = f"must be a MonitorConfig, {_describe(self.defaults)}"
            raise DetectorSettingsError("defaults", problem)
        if not isinstance(self.models, Mapping):
            raise DetectorSettingsError("models", f"must be a mapping, {_describe(self.models)}")
        for model_id, config in self.models.items():
            _model_id(model_id)
            if not isinstance(config, MonitorConfig):
                problem = f"must be a MonitorConfig, {_describe(config)}"
                raise DetectorSettingsError(f"models.{model_id}", problem)
        # A private copy: the caller's dict cannot change settings after validation.
        object.__setattr__(self, "models", dict(self.models))

    def for_model(self, model_id: str) -> MonitorConfig:
        """The configuration for ``model_id``: its own section, else the defaults."""
        return self.models.get(model_id, self.defaults)


_SECTIONS: dict[str, type[Any]] = {
    "adwin": AdwinConfig,
    "page_hinkley": PageHinkleyConfig,
    "error_clip": ErrorClipConfig,
    "prediction_drift": PredictionDriftConfig,
    "labels": LabelsConfig,
    "silence": SilenceConfig,
    "input_quality": InputQualityConfig,
    "estimated": EstimatedConfig,
    "feature_drift": FeatureDriftConfig,
    "schema_change": SchemaChangeConfig,
    "version_regression": VersionRegressionConfig,
}
_MONITOR_KEYS = ("task", *_SECTIONS)
_TOP_LEVEL_KEYS = ("defaults", "models")


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _unknown(key: str, valid: tuple[str, ...]) -> DetectorSettingsError:
    return DetectorSettingsError(key, f"unknown key; valid keys: {', '.join(sorted(valid))}")


def _mapping(key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DetectorSettingsError(key, f"must be a table/mapping, {_describe(value)}")
    return value


def _rekeyed(prefix: str, error: DetectorSettingsError) -> DetectorSettingsError:
    return DetectorSettingsError(f"{prefix}.{error.key}", error.problem)


def _parse_monitor(where: str, section: object, base: MonitorConfig) -> MonitorConfig:
    section = _mapping(where, section)
    for key in section:
        if key not in _MONITOR_KEYS:
            raise _unknown(f"{where}.{key}", _MONITOR_KEYS)
    changes: dict[str, Any] = {}
    if "task" in section:
        changes["task"] = section["task"]
    for name, cls in _SECTIONS.items():
        if name not in section:
            continue
        values = _mapping(f"{where}.{name}", section[name])
        valid = _field_names(cls)
        for key in values:
            if key not in valid:
                raise _unknown(f"{where}.{name}.{key}", valid)
        try:
            changes[name] = replace(getattr(base, name), **values)
        except DetectorSettingsError as error:
            raise _rekeyed(where, error) from None
    try:
        return replace(base, **changes)
    except DetectorSettingsError as error:
        raise _rekeyed(where, error) from None


def parse_detector_settings(data: Mapping[str, Any]) -> DetectorSettings:
    """Build validated settings from a decoded TOML/YAML document (see the module docstring)."""
    data = _mapping("<settings>", data)
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            raise _unknown(str(key), _TOP_LEVEL_KEYS)
    defaults = _parse_monitor("defaults", data.get("defaults", {}), MonitorConfig())
    models: dict[str, MonitorConfig] = {}
    for model_id, section in _mapping("models", data.get("models", {})).items():
        models[_model_id(model_id)] = _parse_monitor(f"models.{model_id}", section, defaults)
    return DetectorSettings(defaults=defaults, models=models)


def load_detector_settings(path: str | Path) -> DetectorSettings:
    """Read settings from a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            with path.open("rb") as handle:
                data: object = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise DetectorSettingsError(str(path), f"invalid TOML: {error}") from error
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise DetectorSettingsError(str(path), f"invalid YAML: {error}") from error
        if data is None:
            data = {}
    else:
        raise DetectorSettingsError(str(path), "unsupported file type; use .toml, .yaml or .yml")
    if not isinstance(data, Mapping):
        raise DetectorSettingsError(str(path), f"must hold a mapping, {_describe(data)}")
    return parse_detector_settings(data)


def _from_text(key: str, text: str, current: object) -> object:
    """Convert a command-line string to the type of the field it overrides."""
    if current is None:  # an optional number (error_clip.max_error)
        if text.strip().lower() in ("", "none", "null"):
            return None
        current = 0.0
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise DetectorSettingsError(key, f"must be true or false, got {text!r}")
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        kind = "an integer" if isinstance(current, int) else "a number"
        raise DetectorSettingsError(key, f"must be {kind}, got {text!r}") from None
    return text


def apply_overrides(settings: DetectorSettings, overrides: Mapping[str, Any]) -> DetectorSettings:
    """Apply ``{"adwin.delta": 0.001, "ph.threshold": "80", "task": ...}`` to every model.

    Meant for command-line ``--set`` flags: the override wins over the defaults and over
    every per-model section. ``ph`` is accepted for ``page_hinkley`` and dashes for
    underscores; string values are converted to the field's type.
    """
    task_changes: dict[str, Any] = {}
    section_changes: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    valid_keys = (
        "task",
        *(f"{name}.{key}" for name, cls in _SECTIONS.items() for key in _field_names(cls)),
    )
    for raw_key, value in overrides.items():
        key = str(raw_key).strip().replace("-", "_")
        section, dot, name = key.partition(".")
        section = _SECTION_ALIASES.get(section, section)
        if not dot:
            if key != "task":
                raise _unknown(str(raw_key), valid_keys)
            task_changes["task"] = None if value in (None, "", "none", "infer") else value
            continue
        cls = _SECTIONS.get(section)
        if cls is None or name not in _field_names(cls):
            raise _unknown(str(raw_key), valid_keys)
        canonical = f"{section}.{name}"
        if isinstance(value, str):
            value = _from_text(canonical, value, getattr(cls(), name))
        section_changes[section][name] = value

    def merged(config: MonitorConfig) -> MonitorConfig:
        changes: dict[str, Any] = dict(task_changes)
        for section, values in section_changes.items():
            if values:
                changes[section] = replace(getattr(config, section), **values)
        return replace(config, **changes)

    return DetectorSettings(
        defaults=merged(settings.defaults),
        models={model_id: merged(config) for model_id, config in settings.models.items()},
    )
