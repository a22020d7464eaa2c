"""Detector settings: file formats, per-model merging, validation, fingerprint, overrides."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from detectors.config import (
    AdwinConfig,
    DetectorSettings,
    ErrorClipConfig,
    MonitorConfig,
    PageHinkleyConfig,
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
        "valid keys: adwin, error_clip, estimated, input_quality, labels, page_hinkley, "
        "prediction_drift, silence, task",
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
