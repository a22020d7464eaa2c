"""The CLI turns configuration mistakes into one clear message and exit code 2."""

from __future__ import annotations

import pytest

from streams.cli.main import main


def test_broker_url_without_scheme_is_a_clear_error(capsys: pytest.CaptureFixture[str]):
    assert main(["worker", "--broker", "localhost:9092"]) == 2
    err = capsys.readouterr().err
    assert "kafka://host:port" in err and "localhost:9092" in err


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
    assert f"cannot reach the broker at kafka://127.0.0.1:{port}" in capsys.readouterr().err
