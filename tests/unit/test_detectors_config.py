"""Detector settings: file formats, per-model merging, validation, fingerprint, overrides."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from detectors.config import (
    AdwinConfig,
    DetectorSettings,
    ErrorClipConfig,
    EstimatedConfig,
    InputQualityConfig,
    LabelsConfig,
    MonitorConfig,
    PageHinkleyConfig,
    PredictionDriftConfig,
    SilenceConfig,
    apply_overrides,
    load_detector_settings,
    parse_detector_settings,
)
from detectors.exceptions import DetectorSettingsError

REPO = Path(__file__).resolve().parents[2]

TOML = """
[defaults]
task = "classification"

[defaults.adwin]
delta = 0.002
clock = 16

[defaults.page_hinkley]
threshold = 50
mode = "up"
after_window = 50

[models.fraud]
task = "regression"

[models.fraud.adwin]
delta = 0.0005

[models."churn.v2".page_hinkley]
mode = "both"
enabled = false
"""

YAML = """
defaults:
  task: classification
  adwin:
    delta: 0.002
    clock: 16
  page_hinkley:
    threshold: 50
    mode: up
    after_window: 50
models:
  fraud:
    task: regression
    adwin:
      delta: 0.0005
  churn.v2:
    page_hinkley:
      mode: both
      enabled: false
"""


@pytest.fixture
def settings_files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "toml": tmp_path / "detectors.toml",
        "yaml": tmp_path / "detectors.yaml",
        "yml": tmp_path / "detectors.yml",
    }
    paths["toml"].write_text(TOML)
    paths["yaml"].write_text(YAML)
    paths["yml"].write_text(YAML)
    return paths


def test_toml_and_yaml_files_give_the_same_settings(settings_files: dict[str, Path]) -> None:
    from_toml = load_detector_settings(settings_files["toml"])
    assert load_detector_settings(str(settings_files["yaml"])) == from_toml
    assert load_detector_settings(settings_files["yml"]) == from_toml
    assert set(from_toml.models) == {"fraud", "churn.v2"}


def test_a_model_section_overrides_the_defaults_field_by_field(
    settings_files: dict[str, Path],
) -> None:
    settings = load_detector_settings(settings_files["toml"])
    defaults = settings.defaults
    assert defaults == MonitorConfig(
        task="classification",
        adwin=AdwinConfig(delta=0.002, clock=16),
        page_hinkley=PageHinkleyConfig(threshold=50.0, mode="up", after_window=50),
    )
    fraud = settings.for_model("fraud")
    assert fraud.task == "regression"
    assert fraud.adwin == replace(defaults.adwin, delta=0.0005)
    assert fraud.adwin.clock == 16, "a default from the file, not the built-in one"
    assert fraud.page_hinkley == defaults.page_hinkley
    churn = settings.for_model("churn.v2")
    assert churn.task == "classification"
    assert churn.adwin == defaults.adwin
    assert churn.page_hinkley == replace(defaults.page_hinkley, mode="both", enabled=False)
    assert settings.for_model("unknown-model") is defaults


def test_an_empty_document_gives_the_built_in_defaults(tmp_path: Path) -> None:
    empty_yaml = tmp_path / "empty.yaml"
    empty_yaml.write_text("")
    empty_toml = tmp_path / "empty.toml"
    empty_toml.write_text("")
    assert load_detector_settings(empty_yaml) == DetectorSettings()
    assert load_detector_settings(empty_toml) == DetectorSettings()
    assert parse_detector_settings({}) == DetectorSettings()
    assert DetectorSettings().for_model("any") == MonitorConfig()


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"default": {}}, "default", "valid keys: defaults, models"),
    (
        {"defaults": {"adwinn": {}}},
        "defaults.adwinn",
        "valid keys: adwin, error_clip, estimated, feature_drift, input_quality, labels, "
        "page_hinkley, prediction_drift, schema_change, silence, task, version_regression",
    ),
    ({"defaults": {"adwin": {"dleta": 0.1}}}, "defaults.adwin.dleta", "clock, delta, enabled"),
    (
        {"defaults": {"page_hinkley": {"treshold": 1}}},
        "defaults.page_hinkley.treshold",
        "threshold",
    ),
    ({"defaults": {"adwin": {"delta": 0}}}, "defaults.adwin.delta", "(0, 1)"),
    ({"defaults": {"adwin": {"delta": 1}}}, "defaults.adwin.delta", "(0, 1)"),
    ({"defaults": {"adwin": {"delta": -0.1}}}, "defaults.adwin.delta", "(0, 1)"),
    ({"defaults": {"adwin": {"delta": float("nan")}}}, "defaults.adwin.delta", "(0, 1)"),
    ({"defaults": {"adwin": {"delta": True}}}, "defaults.adwin.delta", "bool"),
    ({"defaults": {"adwin": {"delta": "0.01"}}}, "defaults.adwin.delta", "str"),
    ({"defaults": {"adwin": {"clock": 0}}}, "defaults.adwin.clock", ">= 1"),
    ({"defaults": {"adwin": {"clock": 3.5}}}, "defaults.adwin.clock", "integer"),
    ({"defaults": {"adwin": {"clock": True}}}, "defaults.adwin.clock", "bool"),
    ({"defaults": {"adwin": {"max_buckets": 1}}}, "defaults.adwin.max_buckets", ">= 2"),
    ({"defaults": {"adwin": {"grace_period": -1}}}, "defaults.adwin.grace_period", ">= 0"),
    ({"defaults": {"adwin": {"enabled": "yes"}}}, "defaults.adwin.enabled", "true or false"),
    (
        {"defaults": {"page_hinkley": {"threshold": 0}}},
        "defaults.page_hinkley.threshold",
        "(0, inf)",
    ),
    ({"defaults": {"page_hinkley": {"threshold": -5}}}, "defaults.page_hinkley.threshold", "(0"),
    ({"defaults": {"page_hinkley": {"threshold": False}}}, "page_hinkley.threshold", "bool"),
    ({"defaults": {"page_hinkley": {"min_instances": 0}}}, "page_hinkley.min_instances", ">= 1"),
    ({"defaults": {"page_hinkley": {"alpha": 0}}}, "defaults.page_hinkley.alpha", "(0, 1]"),
    ({"defaults": {"page_hinkley": {"alpha": 1.01}}}, "defaults.page_hinkley.alpha", "(0, 1]"),
    ({"defaults": {"page_hinkley": {"delta": -0.1}}}, "defaults.page_hinkley.delta", "[0, inf)"),
    (
        {"defaults": {"page_hinkley": {"mode": "sideways"}}},
        "page_hinkley.mode",
        "'up', 'down', 'both'",
    ),
    ({"defaults": {"page_hinkley": {"after_window": 0}}}, "page_hinkley.after_window", ">= 1"),
    ({"defaults": {"error_clip": {"factor": 1.5}}}, "defaults.error_clip.factor", "[2, inf)"),
    ({"defaults": {"error_clip": {"warmup": 9}}}, "defaults.error_clip.warmup", ">= 10"),
    ({"defaults": {"error_clip": {"max_error": 0}}}, "error_clip.max_error", "(0, inf]"),
    ({"defaults": {"error_clip": {"max_error": "1e3"}}}, "error_clip.max_error", "str"),
    ({"defaults": {"error_clip": {"enabled": 1}}}, "error_clip.enabled", "true or false"),
    ({"defaults": {"error_clip": {"factr": 5}}}, "error_clip.factr", "factor, max_error"),
    ({"defaults": {"task": "ranking"}}, "defaults.task", "'classification', 'regression'"),
    ({"defaults": {"task": 1}}, "defaults.task", "'classification', 'regression'"),
    ({"defaults": []}, "defaults", "mapping"),
    ({"defaults": {"adwin": 0.1}}, "defaults.adwin", "mapping"),
    ({"models": {"fraud": {"adwin": {"delta": 2}}}}, "models.fraud.adwin.delta", "(0, 1)"),
    ({"models": {"fraud": {"task": "ranking"}}}, "models.fraud.task", "classification"),
    ({"models": {"fraud": {"ph": {}}}}, "models.fraud.ph", "valid keys"),
    ({"models": {"": {}}}, "models", "non-empty"),
    ({"models": ["fraud"]}, "models", "mapping"),
]


@pytest.mark.parametrize(("data", "key", "hint"), INVALID)
def test_invalid_settings_name_the_key_and_what_is_valid(
    data: dict[str, Any], key: str, hint: str
) -> None:
    with pytest.raises(ValueError) as raised:
        parse_detector_settings(data)
    message = str(raised.value)
    assert key in message
    assert hint in message
    assert isinstance(raised.value, DetectorSettingsError)
    assert raised.value.key.endswith(key)


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: AdwinConfig(delta=1.5), "adwin.delta"),
        (lambda: AdwinConfig(delta=True), "adwin.delta"),
        (lambda: AdwinConfig(clock=0), "adwin.clock"),
        (lambda: AdwinConfig(max_buckets=1), "adwin.max_buckets"),
        (lambda: AdwinConfig(min_window_length=0), "adwin.min_window_length"),
        (lambda: PageHinkleyConfig(threshold=0.0), "page_hinkley.threshold"),
        (lambda: PageHinkleyConfig(threshold=float("inf")), "page_hinkley.threshold"),
        (lambda: PageHinkleyConfig(alpha=0.0), "page_hinkley.alpha"),
        (lambda: PageHinkleyConfig(min_instances=0), "page_hinkley.min_instances"),
        (lambda: PageHinkleyConfig(mode="sideways"), "page_hinkley.mode"),  # type: ignore[arg-type]
        (lambda: MonitorConfig(task="ranking"), "task"),  # type: ignore[arg-type]
        (lambda: MonitorConfig(adwin=PageHinkleyConfig()), "adwin"),  # type: ignore[arg-type]
        (lambda: DetectorSettings(models={"fraud": AdwinConfig()}), "models.fraud"),  # type: ignore[dict-item]
        (lambda: DetectorSettings(defaults=AdwinConfig()), "defaults"),  # type: ignore[arg-type]
    ],
)
def test_direct_construction_is_validated_too(build: Any, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build()


def test_yaml_exponent_without_a_dot_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "detectors.yaml"
    path.write_text("defaults:\n  adwin:\n    delta: 5e-4\n")
    with pytest.raises(ValueError, match=r"defaults\.adwin\.delta.*5\.0e-4"):
        load_detector_settings(path)
    path.write_text("defaults:\n  adwin:\n    delta: 5.0e-4\n")
    assert load_detector_settings(path).defaults.adwin.delta == 5e-4


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("detectors.json", "{}", "unsupported file type"),
        ("detectors.toml", "[defaults\n", "invalid TOML"),
        ("detectors.yaml", "defaults: [\n", "invalid YAML"),
        ("detectors.yaml", "- 1\n- 2\n", "must hold a mapping"),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=fragment) as raised:
        load_detector_settings(path)
    assert name in str(raised.value)


def test_equal_configs_have_equal_fingerprints() -> None:
    built = MonitorConfig(
        task="regression",
        adwin=AdwinConfig(delta=0.001),
        page_hinkley=PageHinkleyConfig(threshold=80),
    )
    parsed = parse_detector_settings(
        {
            "defaults": {
                "task": "regression",
                "adwin": {"delta": 0.001},
                "page_hinkley": {"threshold": 80.0},
            }
        }
    ).defaults
    assert built == parsed
    assert built.fingerprint() == parsed.fingerprint()
    assert pickle.loads(pickle.dumps(built)).fingerprint() == built.fingerprint()
    fingerprint = built.fingerprint()
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0


def one_field_changes() -> list[tuple[str, MonitorConfig]]:
    """Every field of MonitorConfig changed alone to another valid value."""
    base = MonitorConfig()
    other = {
        "enabled": False,
        "delta": 0.125,
        "clock": 7,
        "max_buckets": 9,
        "min_window_length": 11,
        "grace_period": 13,
        "min_instances": 17,
        "threshold": 19.5,
        "alpha": 0.5,
        "mode": "both",
        "after_window": 23,
        "factor": 4.0,
        "warmup": 50,
        "max_error": 1e4,
    }
    changed = [("task", replace(base, task="regression"))]
    for section in ("adwin", "page_hinkley", "error_clip"):
        config = getattr(base, section)
        for f in fields(config):
            changed.append(
                (
                    f"{section}.{f.name}",
                    replace(base, **{section: replace(config, **{f.name: other[f.name]})}),
                )
            )
    return changed


@pytest.mark.parametrize(("key", "config"), one_field_changes())
def test_fingerprint_changes_with_any_single_field(key: str, config: MonitorConfig) -> None:
    assert config != MonitorConfig(), key
    assert config.fingerprint() != MonitorConfig().fingerprint(), key


def test_fingerprint_is_the_same_in_another_process() -> None:
    config = MonitorConfig(task="classification", adwin=AdwinConfig(delta=0.01))
    code = (
        "from detectors.config import AdwinConfig, MonitorConfig;"
        "print(MonitorConfig(task='classification', adwin=AdwinConfig(delta=0.01)).fingerprint())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=REPO
    )
    assert result.stdout.strip() == config.fingerprint()


@pytest.fixture
def two_models() -> DetectorSettings:
    return parse_detector_settings(
        {
            "defaults": {"adwin": {"clock": 16}},
            "models": {
                "fraud": {"task": "regression", "adwin": {"delta": 0.0005}},
                "churn": {"page_hinkley": {"threshold": 10}},
            },
        }
    )


def test_overrides_apply_to_the_defaults_and_every_model(two_models: DetectorSettings) -> None:
    overridden = apply_overrides(
        two_models,
        {
            "adwin.delta": 0.01,
            "ph.threshold": "80",
            "page_hinkley.mode": "both",
            "adwin.enabled": "false",
        },
    )
    configs = [overridden.defaults, *overridden.models.values()]
    assert set(overridden.models) == {"fraud", "churn"}
    for config in configs:
        assert config.adwin.delta == 0.01
        assert config.adwin.enabled is False
        assert config.adwin.clock == 16
        assert config.page_hinkley.threshold == 80.0
        assert config.page_hinkley.mode == "both"
    assert overridden.for_model("fraud").task == "regression"
    assert two_models.for_model("fraud").adwin.delta == 0.0005, "the input is left as it was"


@pytest.mark.parametrize(
    ("key", "value", "check"),
    [
        ("page-hinkley.min-instances", "12", lambda c: c.page_hinkley.min_instances == 12),
        ("ph.alpha", 0.5, lambda c: c.page_hinkley.alpha == 0.5),
        ("adwin.grace_period", 3, lambda c: c.adwin.grace_period == 3),
        ("task", "regression", lambda c: c.task == "regression"),
        ("task", "infer", lambda c: c.task is None),
        ("error-clip.max-error", "250", lambda c: c.error_clip.max_error == 250.0),
        ("error_clip.max_error", "none", lambda c: c.error_clip.max_error is None),
        ("error_clip.factor", "4", lambda c: c.error_clip.factor == 4.0),
        ("error_clip.enabled", "off", lambda c: c.error_clip.enabled is False),
    ],
)
def test_override_keys_accept_aliases_and_strings(
    two_models: DetectorSettings, key: str, value: object, check: Any
) -> None:
    overridden = apply_overrides(two_models, {key: value})
    assert check(overridden.defaults)
    assert all(check(config) for config in overridden.models.values())


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("adwin.dleta", 0.1, "valid keys: adwin.clock"),
        ("kswin.alpha", 0.1, "page_hinkley.threshold"),
        ("threshold", 10, "valid keys"),
        ("adwin.delta.x", 0.1, "valid keys"),
        ("adwin.delta", 2.0, "adwin.delta"),
        ("adwin.delta", "tiny", "adwin.delta"),
        ("adwin.clock", "3.5", "adwin.clock"),
        ("ph.enabled", "maybe", "page_hinkley.enabled"),
        ("ph.mode", "sideways", "page_hinkley.mode"),
        ("error_clip.max_error", "huge", "error_clip.max_error"),
        ("error_clip.warmup", "5", "error_clip.warmup"),
    ],
)
def test_bad_overrides_are_refused(
    two_models: DetectorSettings, key: str, value: object, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
        apply_overrides(two_models, {key: value})


def test_settings_are_immutable_and_picklable(two_models: DetectorSettings) -> None:
    source = {"fraud": MonitorConfig()}
    settings = DetectorSettings(models=source)
    source["churn"] = MonitorConfig()
    assert set(settings.models) == {"fraud"}, "a later change to the caller's dict leaks in"
    with pytest.raises(AttributeError):
        settings.defaults = MonitorConfig()  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(two_models)) == two_models


def test_error_clip_section_reads_from_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "detectors.toml"
    toml.write_text(
        "[defaults.error_clip]\nfactor = 5\nwarmup = 200\n"
        "[models.price.error_clip]\nmax_error = 1e4\n"
        "[models.free.error_clip]\nmax_error = inf\nenabled = false\n"
    )
    yaml = tmp_path / "detectors.yaml"
    yaml.write_text(
        "defaults:\n  error_clip: {factor: 5, warmup: 200}\n"
        "models:\n  price: {error_clip: {max_error: 1.0e+4}}\n"
        "  free: {error_clip: {max_error: null, enabled: false}}\n"
    )
    for path in (toml, yaml):
        settings = load_detector_settings(path)
        assert settings.defaults.error_clip == ErrorClipConfig(factor=5.0, warmup=200)
        assert settings.for_model("price").error_clip == ErrorClipConfig(
            factor=5.0, warmup=200, max_error=10_000.0
        )
        free = settings.for_model("free").error_clip
        assert (free.enabled, free.max_error, free.factor) == (False, None, 5.0)


def test_a_config_pickled_before_error_clip_existed_reads_back_with_the_default() -> None:
    config = MonitorConfig(task="regression")
    state = dict(config.__dict__)
    del state["error_clip"]
    old = object.__new__(MonitorConfig)
    old.__dict__.update(state)  # what unpickling an older MonitorConfig leaves
    assert old.error_clip == ErrorClipConfig()
    assert old.fingerprint() == config.fingerprint()


# --- the label-free and liveness signals' sections ----------------------------------------

SIGNAL_SECTIONS = ("prediction_drift", "labels", "silence", "input_quality", "estimated")


def _in(section: str, **values: Any) -> dict[str, Any]:
    return {"defaults": {section: values}}


INVALID_SIGNALS = [
    (_in("prediction_drift", enabled="yes"), "prediction_drift.enabled", "true or false"),
    (_in("prediction_drift", delta=0), "prediction_drift.delta", "(0, 1)"),
    (_in("prediction_drift", delta=1.0), "prediction_drift.delta", "(0, 1)"),
    (_in("prediction_drift", warmup=31), "prediction_drift.warmup", ">= 32"),
    (_in("prediction_drift", warmup=64.0), "prediction_drift.warmup", "float"),
    (_in("prediction_drift", confirm=0), "prediction_drift.confirm", ">= 1"),
    (_in("prediction_drift", positive_class=""), "prediction_drift.positive_class", "non-empty"),
    (_in("prediction_drift", positive_class=1), "prediction_drift.positive_class", "int"),
    (_in("prediction_drift", warning_shift=0), "prediction_drift.warning_shift", "(0, 1]"),
    (_in("prediction_drift", critical_shift=1.5), "prediction_drift.critical_shift", "(0, 1]"),
    (
        _in("prediction_drift", warning_shift=0.1, critical_shift=0.05),
        "prediction_drift.critical_shift",
        ">= warning_shift (0.1)",
    ),
    (_in("prediction_drift", warning_std=0), "prediction_drift.warning_std", "(0, inf)"),
    (_in("prediction_drift", critical_std=0.4), "prediction_drift.critical_std", ">= warning_std"),
    (_in("prediction_drift", critical_std="3"), "prediction_drift.critical_std", "quoted number"),
    (_in("labels", enabled=0), "labels.enabled", "true or false"),
    (_in("labels", window_s=0), "labels.window_s", "(0, inf)"),
    (_in("labels", window_s=float("inf")), "labels.window_s", "(0, inf)"),
    (_in("labels", expected_delay_s=0), "labels.expected_delay_s", "(0, inf)"),
    (_in("labels", expected_delay_s="600"), "labels.expected_delay_s", "str"),
    (_in("labels", delay_factor=0.5), "labels.delay_factor", "[1, inf)"),
    (_in("labels", min_delay_s=-1), "labels.min_delay_s", "[0, inf)"),
    (_in("labels", warmup_labels=9), "labels.warmup_labels", ">= 10"),
    (_in("labels", min_predictions=9), "labels.min_predictions", ">= 10"),
    (_in("labels", coverage_ratio=0), "labels.coverage_ratio", "(0, 1]"),
    (_in("labels", resolve_ratio=1.5), "labels.resolve_ratio", "(0, 1]"),
    (
        _in("labels", coverage_ratio=0.6, resolve_ratio=0.5),
        "labels.resolve_ratio",
        ">= coverage_ratio (0.6)",
    ),
    (_in("labels", min_coverage=0), "labels.min_coverage", "(0, 1]"),
    (_in("labels", min_coverage=1.01), "labels.min_coverage", "(0, 1]"),
    (_in("labels", z=0), "labels.z", "(0, inf)"),
    (_in("labels", delay_growth=1), "labels.delay_growth", "(1, inf)"),
    (_in("labels", window=60), "labels.window", "window_s"),
    (_in("silence", enabled="no"), "silence.enabled", "true or false"),
    (_in("silence", factor=0.5), "silence.factor", "[1, inf)"),
    (_in("silence", factor=True), "silence.factor", "bool"),
    (_in("silence", min_gap_s=0), "silence.min_gap_s", "(0, inf)"),
    (_in("silence", warmup=9), "silence.warmup", ">= 10"),
    (_in("silence", gap=5), "silence.gap", "min_gap_s"),
    (_in("input_quality", delta=1), "input_quality.delta", "(0, 1)"),
    (_in("input_quality", min_rate=-0.1), "input_quality.min_rate", "[0, 1]"),
    (_in("input_quality", min_rate=1.5), "input_quality.min_rate", "[0, 1]"),
    (_in("estimated", delta=0), "estimated.delta", "(0, 1)"),
    (_in("estimated", min_rise=2), "estimated.min_rise", "[0, 1]"),
    (_in("estimated", reconcile_after=9), "estimated.reconcile_after", ">= 10"),
    (_in("estimated", reconcile_after=None), "estimated.reconcile_after", "NoneType"),
    ({"defaults": {"silence": 5}}, "defaults.silence", "mapping"),
    ({"defaults": {"label": {}}}, "defaults.label", "labels"),
    (
        {"models": {"fraud": {"labels": {"coverage_ratio": 0.9}}}},
        "models.fraud.labels.resolve_ratio",
        ">= coverage_ratio (0.9)",
    ),
    ({"models": {"fraud": {"silence": {"factor": 0}}}}, "models.fraud.silence.factor", "[1"),
]


@pytest.mark.parametrize(("data", "key", "hint"), INVALID_SIGNALS)
def test_invalid_signal_settings_name_the_dotted_key(
    data: dict[str, Any], key: str, hint: str
) -> None:
    with pytest.raises(DetectorSettingsError) as raised:
        parse_detector_settings(data)
    message = str(raised.value)
    assert key in message and hint in message, message
    assert raised.value.key.endswith(key)
    assert raised.value.key.startswith(("defaults.", "models.")), "the whole dotted path"


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: PredictionDriftConfig(confirm=0), "prediction_drift.confirm"),
        (lambda: PredictionDriftConfig(critical_shift=0.01), "prediction_drift.critical_shift"),
        (lambda: PredictionDriftConfig(positive_class=None), "prediction_drift.positive_class"),  # type: ignore[arg-type]
        (lambda: LabelsConfig(resolve_ratio=0.4), "labels.resolve_ratio"),
        (lambda: LabelsConfig(min_coverage=float("nan")), "labels.min_coverage"),
        (lambda: SilenceConfig(min_gap_s=-5.0), "silence.min_gap_s"),
        (lambda: InputQualityConfig(min_rate=float("nan")), "input_quality.min_rate"),
        (lambda: EstimatedConfig(reconcile_after=True), "estimated.reconcile_after"),  # type: ignore[arg-type]
        (lambda: MonitorConfig(labels=SilenceConfig()), "labels"),  # type: ignore[arg-type]
        (lambda: MonitorConfig(silence={"factor": 8.0}), "silence"),  # type: ignore[arg-type]
    ],
)
def test_signal_sections_validate_on_construction_too(build: Any, key: str) -> None:
    with pytest.raises(DetectorSettingsError, match=key.replace(".", r"\.")) as raised:
        build()
    assert raised.value.key == key


SIGNALS_TOML = """
[defaults.prediction_drift]
delta = 0.001
positive_class = "fraud"
confirm = 300
critical_shift = 0.3

[defaults.labels]
window_s = 1800
expected_delay_s = 900
min_coverage = 0.7

[defaults.silence]
factor = 8
min_gap_s = 120

[defaults.input_quality]
min_rate = 0.02

[defaults.estimated]
enabled = false
reconcile_after = 500

[models.churn.prediction_drift]
positive_class = "left"

[models.churn.silence]
enabled = false

[models.churn.labels]
coverage_ratio = 0.6
"""

SIGNALS_YAML = """
defaults:
  prediction_drift: {delta: 1.0e-3, positive_class: fraud, confirm: 300, critical_shift: 0.3}
  labels: {window_s: 1800, expected_delay_s: 900, min_coverage: 0.7}
  silence: {factor: 8, min_gap_s: 120}
  input_quality: {min_rate: 0.02}
  estimated: {enabled: false, reconcile_after: 500}
models:
  churn:
    prediction_drift: {positive_class: left}
    silence: {enabled: false}
    labels: {coverage_ratio: 0.6}
"""


def test_signal_sections_read_from_toml_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "d.toml").write_text(SIGNALS_TOML)
    (tmp_path / "d.yaml").write_text(SIGNALS_YAML)
    toml = load_detector_settings(tmp_path / "d.toml")
    assert load_detector_settings(tmp_path / "d.yaml") == toml
    d = toml.defaults
    assert d.prediction_drift == PredictionDriftConfig(
        delta=0.001, positive_class="fraud", confirm=300, critical_shift=0.3
    )
    assert d.labels == LabelsConfig(window_s=1800.0, expected_delay_s=900.0, min_coverage=0.7)
    assert d.silence == SilenceConfig(factor=8.0, min_gap_s=120.0)
    assert d.input_quality == InputQualityConfig(min_rate=0.02)
    assert d.estimated == EstimatedConfig(enabled=False, reconcile_after=500)
    assert isinstance(d.silence.factor, float) and isinstance(d.labels.window_s, float)
    churn = toml.for_model("churn")
    # field by field over the defaults
    assert churn.prediction_drift == replace(d.prediction_drift, positive_class="left")
    assert churn.silence == replace(d.silence, enabled=False)
    assert churn.labels == replace(d.labels, coverage_ratio=0.6)
    assert (churn.input_quality, churn.estimated) == (d.input_quality, d.estimated)
    assert toml.for_model("other") == d
    # the adwin and page_hinkley sections are untouched by the signal ones
    assert (d.adwin, d.page_hinkley) == (AdwinConfig(), PageHinkleyConfig())


def test_an_empty_document_gives_the_default_signal_settings() -> None:
    defaults = parse_detector_settings({}).defaults
    for section, cls in zip(
        SIGNAL_SECTIONS,
        (PredictionDriftConfig, LabelsConfig, SilenceConfig, InputQualityConfig, EstimatedConfig),
        strict=True,
    ):
        assert getattr(defaults, section) == cls()


@pytest.mark.parametrize(
    ("key", "value", "check"),
    [
        ("silence.factor", "8", lambda c: c.silence.factor == 8.0),
        ("silence.min-gap-s", "120", lambda c: c.silence.min_gap_s == 120.0),
        ("silence.enabled", "off", lambda c: c.silence.enabled is False),
        ("labels.expected_delay_s", "900", lambda c: c.labels.expected_delay_s == 900.0),
        ("labels.expected_delay_s", "none", lambda c: c.labels.expected_delay_s is None),
        ("labels.min_coverage", "0.9", lambda c: c.labels.min_coverage == 0.9),
        ("labels.window_s", 600, lambda c: c.labels.window_s == 600.0),
        ("labels.warmup_labels", "50", lambda c: c.labels.warmup_labels == 50),
        (
            "prediction_drift.positive_class",
            "fraud",
            lambda c: c.prediction_drift.positive_class == "fraud",
        ),  # noqa: E501
        ("prediction-drift.confirm", "50", lambda c: c.prediction_drift.confirm == 50),
        ("prediction_drift.critical_std", "3", lambda c: c.prediction_drift.critical_std == 3.0),
        ("input_quality.min_rate", "0.05", lambda c: c.input_quality.min_rate == 0.05),
        ("input-quality.enabled", "false", lambda c: c.input_quality.enabled is False),
        ("estimated.reconcile_after", "300", lambda c: c.estimated.reconcile_after == 300),
        ("estimated.min_rise", "0", lambda c: c.estimated.min_rise == 0.0),
    ],
)
def test_signal_overrides_apply_to_the_defaults_and_every_model(
    key: str, value: object, check: Any
) -> None:
    settings = load_signal_settings()
    overridden = apply_overrides(settings, {key: value})
    assert check(overridden.defaults)
    assert set(overridden.models) == {"churn"}
    assert check(overridden.for_model("churn"))
    # the rest of a model's own section stays
    assert overridden.for_model("churn").prediction_drift.delta == 0.001
    assert overridden.for_model("churn").labels.coverage_ratio == 0.6


def load_signal_settings() -> DetectorSettings:
    return parse_detector_settings(tomllib.loads(SIGNALS_TOML))


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("silence.factor", "0.5", "silence.factor"),
        ("silence.factor", "fast", "silence.factor"),
        ("silence.warmup", "2.5", "silence.warmup"),
        ("silence.gap", "5", "valid keys"),
        ("labels.resolve_ratio", "0.1", "labels.resolve_ratio"),
        ("labels.min_coverage", "most", "labels.min_coverage"),
        ("prediction_drift.critical_shift", "0.01", "prediction_drift.critical_shift"),
        ("input_quality.enabled", "maybe", "input_quality.enabled"),
        ("estimated.reconcile_after", "5", "estimated.reconcile_after"),
    ],
)
def test_bad_signal_overrides_are_refused(key: str, value: object, fragment: str) -> None:
    with pytest.raises(DetectorSettingsError, match=fragment.replace(".", r"\.")):
        apply_overrides(load_signal_settings(), {key: value})


SIGNAL_FIELD_CHANGES: dict[str, dict[str, Any]] = {
    "prediction_drift": {
        "enabled": False,
        "delta": 0.125,
        "warmup": 50,
        "confirm": 7,
        "positive_class": "fraud",
        "warning_shift": 0.07,
        "critical_shift": 0.3,
        "warning_std": 0.7,
        "critical_std": 3.0,
    },
    "labels": {
        "enabled": False,
        "window_s": 1800.0,
        "expected_delay_s": 900.0,
        "delay_factor": 3.0,
        "min_delay_s": 30.0,
        "warmup_labels": 300,
        "min_predictions": 50,
        "coverage_ratio": 0.6,
        "resolve_ratio": 0.9,
        "min_coverage": 0.9,
        "z": 4.0,
        "delay_growth": 4.0,
    },
    "silence": {"enabled": False, "factor": 8.0, "min_gap_s": 120.0, "warmup": 50},
    "input_quality": {"enabled": False, "delta": 0.125, "min_rate": 0.05, "confirm": 50},
    "estimated": {
        "enabled": False,
        "delta": 0.125,
        "min_rise": 0.05,
        "reconcile_after": 300,
        "confirm": 50,
    },
    "feature_drift": {
        "enabled": False,
        "delta": 0.001,
        "warmup": 100,
        "confirm": 50,
        "max_features": 10,
        "max_categories": 20,
        "warning_std": 0.7,
        "critical_std": 3.0,
        "warning_shift": 0.1,
        "critical_shift": 0.3,
    },
    "schema_change": {
        "enabled": False,
        "warmup": 100,
        "window": 200,
        "min_presence": 0.95,
        "share": 0.4,
        "max_keys": 64,
    },
    "version_regression": {
        "enabled": False,
        "min_outcomes": 300,
        "z": 4.0,
        "min_effect": 0.05,
        "min_ratio": 1.5,
        "window": 2000,
        "max_versions": 6,
    },
}


def signal_field_changes() -> list[tuple[str, MonitorConfig]]:
    base = MonitorConfig()
    changed = []
    for section, values in SIGNAL_FIELD_CHANGES.items():
        config = getattr(base, section)
        assert set(values) == {f.name for f in fields(config)}, f"a field of {section} is new"
        for name, value in values.items():
            assert getattr(config, name) != value
            changed.append(
                (f"{section}.{name}", replace(base, **{section: replace(config, **{name: value})}))
            )
    return changed


def test_every_signal_section_is_a_monitor_field() -> None:
    assert set(SIGNAL_FIELD_CHANGES) == {f.name for f in fields(MonitorConfig)} - {
        "task",
        "adwin",
        "page_hinkley",
        "error_clip",
    }


@pytest.mark.parametrize(("key", "config"), signal_field_changes())
def test_fingerprint_changes_with_any_signal_field(key: str, config: MonitorConfig) -> None:
    assert config != MonitorConfig(), key
    assert config.fingerprint() != MonitorConfig().fingerprint(), key


def test_fingerprints_tell_sections_apart_and_ignore_int_or_float() -> None:
    base = MonitorConfig()
    a = replace(base, input_quality=InputQualityConfig(delta=0.125))
    b = replace(base, estimated=EstimatedConfig(delta=0.125))
    assert a.fingerprint() != b.fingerprint()
    assert (
        replace(base, silence=SilenceConfig(factor=8)).fingerprint()
        == replace(base, silence=SilenceConfig(factor=8.0)).fingerprint()
    )
    assert LabelsConfig(window_s=600) == LabelsConfig(window_s=600.0)
    assert pickle.loads(pickle.dumps(load_signal_settings())) == load_signal_settings()


def test_a_config_pickled_before_the_signal_sections_existed_reads_back_with_defaults() -> None:
    config = MonitorConfig(task="classification")
    state = dict(config.__dict__)
    for section in SIGNAL_SECTIONS:
        del state[section]
    old = object.__new__(MonitorConfig)
    old.__dict__.update(state)  # what unpickling an older MonitorConfig leaves
    for section in SIGNAL_SECTIONS:
        assert getattr(old, section) == getattr(MonitorConfig(), section)
    assert old.fingerprint() == config.fingerprint()
