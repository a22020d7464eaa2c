"""The CLI turns configuration mistakes into one clear message and exit code 2."""

from __future__ import annotations

import pytest

from streams.cli.main import main


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("localhost:9092", "kafka://localhost:9092"),
        ("kafka://localhost:9092", "kafka://localhost:9092"),
        ("kafka://a:1;kafka://b:2", "kafka://a:1;kafka://b:2"),
        ("a:1, b:2", "kafka://a:1;kafka://b:2"),
    ],
)
def test_a_broker_is_host_port_with_or_without_its_scheme(given: str, kept: str) -> None:
    from streams.producer import WatchkeeperProducer
    from streams.settings import Settings

    settings = Settings(broker=given)
    assert settings.broker == kept
    assert settings.bootstrap_servers == kept.replace("kafka://", "").replace(";", ",")
    assert WatchkeeperProducer(given)._bootstrap_servers == settings.bootstrap_servers


@pytest.mark.parametrize(
    ("broker", "says"),
    [
        ("localhost", "must be host:port"),
        ("http://localhost:9092", "the scheme must be kafka:// or none"),
        ("localhost:99999", "must be host:port"),
    ],
)
def test_a_bad_broker_is_one_line_naming_it(
    broker: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--broker", broker]) == 2
    err = capsys.readouterr().err
    assert f"broker: {says}" in err or ("broker" in err and says in err), err
    assert "validation error" not in err and "pydantic" not in err and err.count("\n") == 1


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("watchkeeper ")


def test_the_top_level_help_has_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert ":class:" not in out and "``" not in out and "predictions" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--models", "0"],
        ["simulate", "--models", "-3"],
        ["demo", "--predictions-per-model", "-1"],
        ["demo", "--timeout", "0"],
        ["worker", "--partitions", "0"],
    ],
)
def test_counts_below_one_are_refused_by_the_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_few_models_make_a_scenario_with_fewer_degradations() -> None:
    """``simulate --models 1`` and ``demo --models 2`` once raised ValueError."""
    from streams.dev.simulate import build_scenario

    for models in (1, 2):
        scenario = build_scenario(models=models, predictions_per_model=10, degraded=min(3, models))
        assert len(scenario.models) == models and len(scenario.degraded) == models


def test_replay_out_that_cannot_be_written_is_refused_before_reading(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No broker at port 1: the directory is checked before anything is read."""
    argv = ["replay", "--broker", "127.0.0.1:1", "--out", "/proc/nope/results", "--no-progress"]
    assert main(argv) == 2
    assert "--out /proc/nope/results: cannot write there" in capsys.readouterr().err


def test_bad_detector_config_names_the_key(tmp_path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "detectors.toml"
    config.write_text("[defaults.adwin]\ndelta = 3\n")
    assert main(["worker", "--broker", "kafka://127.0.0.1:1", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "delta" in err and str(config) in err


def test_missing_detector_config_file_is_reported(tmp_path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "nope.toml"
    assert main(["worker", "--broker", "kafka://127.0.0.1:1", "--config", str(missing)]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_environment_settings_are_read(monkeypatch: pytest.MonkeyPatch):
    from streams.cli.main import build_parser, settings_from

    monkeypatch.setenv("WATCHKEEPER_APP_ID", "from-env")
    monkeypatch.setenv("WATCHKEEPER_TOPIC_ALERTS", "pages")
    settings = settings_from(build_parser().parse_args(["worker", "--partitions", "8"]))
    assert (settings.app_id, settings.topics.alerts, settings.partitions) == (
        "from-env",
        "pages",
        8,
    )


def test_unreachable_broker_is_a_clear_error(capsys: pytest.CaptureFixture[str]):
    from streams.dev.embedded import free_port

    port = free_port()  # nothing listens there
    assert main(["worker", "--broker", f"kafka://127.0.0.1:{port}"]) == 2
    assert f"no Kafka broker answered at 127.0.0.1:{port}" in capsys.readouterr().err
