"""The Prometheus metrics: names by the contract and the conventions, the port setting, a
port in use, and the worker's gauges that must stay bounded."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from streams.cli.main import build_parser, main, settings_from
from streams.errors import ConfigError
from streams.metrics import (
    CONSUMER_LAG,
    METRIC_NAMES,
    REDIS_UP,
    REGISTRY,
    forget_model,
    start_metrics_server,
)
from streams.notify.loop import run_notifier
from streams.settings import Settings
from streams.worker.observe import GaugedBreaker, LagGauges, ModelGauges

# the metrics contract (/tmp/notes/metrics_contract.md, README "Metrics"): name -> labels
CONTRACT: dict[str, set[str]] = {
    "watchkeeper_build_info": {"version", "role"},
    "watchkeeper_redis_up": set(),
    "watchkeeper_events_total": {"kind"},
    "watchkeeper_outcomes_total": set(),
    "watchkeeper_dead_letters_total": {"reason"},
    "watchkeeper_alerts_total": {"kind", "severity"},
    "watchkeeper_consumer_lag_messages": {"topic", "partition"},
    "watchkeeper_batch_duration_seconds": {"step"},
    "watchkeeper_model_error_rate": {"model_id"},
    "watchkeeper_model_label_coverage_ratio": {"model_id"},
    "watchkeeper_model_last_event_timestamp_seconds": {"model_id"},
    "watchkeeper_notifier_alerts_total": {"kind", "severity"},
    "watchkeeper_pages_total": {"channel", "outcome"},
}


def _families() -> dict[str, tuple[str, set[str]]]:
    """Exposition name -> (type, label names), as a scrape of the registry shows them."""
    found = {}
    for family in REGISTRY.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = set(getattr(REGISTRY._names_to_collectors[name], "_labelnames", ()))
        found[name] = (family.type, labels)
    return found


def _samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(REGISTRY).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket listens on for the test's duration."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_the_registry_holds_exactly_the_contracts_metrics_with_their_labels() -> None:
    families = _families()
    assert set(families) == METRIC_NAMES == set(CONTRACT)
    assert {name: labels for name, (_, labels) in families.items()} == CONTRACT


def test_names_follow_the_prometheus_conventions() -> None:
    text = generate_latest(REGISTRY).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    # *_created: served only until start_metrics_server turns them off (its test checks)
    types = {n: t for n, t in types.items() if not n.endswith("_created")}
    assert set(types) == METRIC_NAMES
    for name, kind in types.items():
        assert re.fullmatch(r"watchkeeper_[a-z][a-z_]*[a-z]", name), name
        assert name.endswith("_total") == (kind == "counter"), name
        # base units only, named as the last word (before _total)
        assert not re.search(r"_(ms|milliseconds|minutes|hours|percent|count)(_|$)", name), name
        if "duration" in name or "timestamp" in name:
            assert name.endswith("_seconds"), name
    assert types["watchkeeper_batch_duration_seconds"] == "histogram"
    assert types["watchkeeper_consumer_lag_messages"] == "gauge"
    assert types["watchkeeper_model_label_coverage_ratio"] == "gauge"


def test_the_port_is_a_setting_a_flag_and_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().metrics_port == 0  # off unless asked
    monkeypatch.setenv("WATCHKEEPER_METRICS_PORT", "9464")
    assert Settings().metrics_port == 9464
    for command in ("worker", "notify"):
        args = build_parser().parse_args([command, "--metrics-port", "9465"])
        assert settings_from(args).metrics_port == 9465  # the flag wins over the env


@pytest.mark.parametrize("port", [-1, 65536, 100_000])
def test_a_port_out_of_range_is_one_clear_line(
    port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError, match="TCP port 1..65535, or 0"):
        Settings(metrics_port=port)
    assert main(["worker", "--metrics-port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("watchkeeper: metrics_port: must be a TCP port 1..65535, or 0")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_server_serves_the_registry_and_frees_its_port_when_stopped() -> None:
    port = _free_port()
    server = start_metrics_server(port, "worker")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.stop()
    assert 'watchkeeper_build_info{role="worker",version=' in text
    assert "_created" not in text  # no creation-time series per counter child
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))  # noqa: S104 - the address the server had


def test_a_port_in_use_is_a_config_error_not_an_oserror(busy_port: int) -> None:
    with pytest.raises(ConfigError, match=f"metrics port {busy_port} is already in use"):
        start_metrics_server(busy_port, "worker")


def test_a_worker_with_its_metrics_port_in_use_exits_2_with_one_line(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # the port is taken before the worker connects to anything: no broker needed
    code = main(["worker", "--metrics-port", str(busy_port), "--broker", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"watchkeeper: metrics port {busy_port} is already in use; pick another "
        "--metrics-port (or 0 to disable metrics)\n"
    )


def test_a_notifier_with_its_metrics_port_in_use_stops_before_connecting(busy_port: int) -> None:
    settings = Settings(metrics_port=busy_port, broker="127.0.0.1:9")
    with pytest.raises(ConfigError, match="already in use"):
        asyncio.run(run_notifier(settings, stop=asyncio.Event()))


def _model_series() -> dict[str, set[str]]:
    names = (
        "watchkeeper_model_error_rate",
        "watchkeeper_model_label_coverage_ratio",
        "watchkeeper_model_last_event_timestamp_seconds",
    )
    found: dict[str, set[str]] = {n: set() for n in names}
    for (name, labels), _ in _samples().items():
        if name in found:
            found[name] |= {v for k, v in labels if k == "model_id" and v.startswith("mg-")}
    return found


@pytest.fixture
def gauges() -> Iterator[ModelGauges]:
    g = ModelGauges(cap=3, retention_ms=3_600_000)
    yield g
    forget_model([f"mg-{i}" for i in range(10)])


def _snap(error: float, at_ms: int, coverage: float | None = 0.9) -> dict[str, float]:
    snap = {"recent_error_rate": error, "last_prediction_ms": at_ms}
    if coverage is not None:
        snap["label_coverage"] = coverage
    return snap


def test_per_model_gauges_take_the_newest_snapshot_at_publish(gauges: ModelGauges) -> None:
    gauges.note({"mg-0": _snap(0.1, 1_000_000)}, {"mg-0": 0})
    assert _model_series()["watchkeeper_model_error_rate"] == set()  # not on the batch path
    gauges.note({"mg-0": _snap(0.25, 2_000_000, None)}, {"mg-0": 0})
    gauges.publish()
    samples = _samples()
    labels = frozenset({("model_id", "mg-0")})
    assert samples[("watchkeeper_model_error_rate", labels)] == 0.25
    assert samples[("watchkeeper_model_last_event_timestamp_seconds", labels)] == 2000.0
    assert ("watchkeeper_model_label_coverage_ratio", labels) not in samples  # none yet


def test_per_model_series_never_exceed_the_model_cap(gauges: ModelGauges) -> None:
    for i in range(5):  # one at a time: mg-0 is the least recently updated
        gauges.note({f"mg-{i}": _snap(0.1, 1_000_000 + i)}, {f"mg-{i}": 0})
        gauges.publish()
    expected = {"mg-2", "mg-3", "mg-4"}
    assert all(models == expected for models in _model_series().values())
    gauges.note({"mg-2": _snap(0.1, 1_000_010)}, {"mg-2": 0})  # mg-2 is recent again
    gauges.note({"mg-5": _snap(0.1, 1_000_011)}, {"mg-5": 0})
    gauges.publish()
    assert _model_series()["watchkeeper_model_error_rate"] == {"mg-2", "mg-4", "mg-5"}
    assert set(gauges.shown) == {"mg-2", "mg-4", "mg-5"}


def test_models_of_a_partition_that_moved_or_unseen_for_the_retention_lose_their_series(
    gauges: ModelGauges,
) -> None:
    gauges.note({"mg-0": _snap(0.1, 1_000_000), "mg-1": _snap(0.1, 1_000_000)}, {"mg-0": 0})
    gauges.note({}, {"mg-1": 1})
    gauges.publish()
    gauges.note({"mg-2": _snap(0.1, 1_000_000)}, {"mg-2": 1})  # noted, not yet published
    gauges.drop_partitions({1})
    gauges.publish()
    assert _model_series()["watchkeeper_model_error_rate"] == {"mg-0"}
    # an hour of event time later (the retention), mg-0 has not been seen since
    gauges.note({"mg-3": _snap(0.1, 1_000_000 + 3_600_001)}, {"mg-3": 0})
    gauges.publish()
    assert _model_series()["watchkeeper_model_error_rate"] == {"mg-3"}


def test_lag_series_follow_the_assignment() -> None:
    lag = LagGauges()
    lag.publish({("lag-t", 0): 5, ("lag-t", 1): 0, ("lag-u", 0): -1})
    shown = {
        (dict(k)["topic"], dict(k)["partition"]): v
        for (n, k), v in _samples().items()
        if n == "watchkeeper_consumer_lag_messages" and dict(k)["topic"].startswith("lag-")
    }
    assert shown == {("lag-t", "0"): 5, ("lag-t", "1"): 0, ("lag-u", "0"): 0}
    lag.publish({("lag-t", 1): 2})  # partitions 0 moved away
    assert CONSUMER_LAG.labels("lag-t", "1")._value.get() == 2
    remaining = {k for (n, k) in _samples() if n == "watchkeeper_consumer_lag_messages"}
    assert frozenset({("topic", "lag-t"), ("partition", "0")}) not in remaining
    assert frozenset({("topic", "lag-u"), ("partition", "0")}) not in remaining
    lag.publish({})


def test_the_workers_breaker_sets_redis_up() -> None:
    breaker = GaugedBreaker()
    assert breaker.observed_at is None
    breaker.failed("testing", ConnectionError("refused"))
    assert REDIS_UP._value.get() == 0 and breaker.down
    assert breaker.observed_at is not None
    breaker.succeeded()
    assert REDIS_UP._value.get() == 1 and not breaker.down
