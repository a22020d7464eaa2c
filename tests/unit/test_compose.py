"""docker-compose.yml is validated statically: there is no Docker engine here."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.contract.notification import parse_channel
from streams.settings import NotifySettings, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_stack_wires_workers_to_kafka_and_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "redis", "worker"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert "broker,controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert kafka["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    worker = services["worker"]
    env = worker["environment"]
    # every WATCHKEEPER_* variable must be a real setting, and the URLs must name services
    fields = {f"WATCHKEEPER_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    assert env["WATCHKEEPER_BROKER"].startswith("kafka://kafka:")
    assert env["WATCHKEEPER_REDIS_URL"].startswith("redis://redis:")
    Settings(broker=env["WATCHKEEPER_BROKER"], redis_url=env["WATCHKEEPER_REDIS_URL"])
    for dep in ("kafka", "redis"):
        assert worker["depends_on"][dep]["condition"] == "service_healthy"
        assert "healthcheck" in services[dep]
    assert worker["command"][0] == "watchkeeper"


def test_compose_workers_get_time_for_their_bounded_stop_and_restart_after_exit_70():
    """docker sends SIGKILL 10 s after SIGTERM by default: shorter than the worker's own
    bound, so a plain stop would lose the batches in flight to a crash recovery."""
    worker = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]
    grace = worker["stop_grace_period"]
    assert grace.endswith("s"), grace
    bound = Settings.model_fields["shutdown_grace_s"].default + 5  # BoundedStopWorker's exit 70
    assert float(grace[:-1]) > bound
    assert worker["restart"] in {"unless-stopped", "always", "on-failure"}
    partitions = int(worker["environment"]["WATCHKEEPER_PARTITIONS"])
    assert worker["deploy"]["replicas"] <= partitions  # a worker beyond that would idle


def test_compose_notifiers_are_configured_with_real_settings():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    notifier = services["notifier"]
    assert notifier["command"] == ["watchkeeper", "notify"]
    env = notifier["environment"]
    top = {f"WATCHKEEPER_{name.upper()}" for name in Settings.model_fields}
    nested = {f"WATCHKEEPER_NOTIFY_{name.upper()}" for name in NotifySettings.model_fields}
    assert set(env) <= top | nested, set(env) - top - nested
    fallback = NotifySettings(fallback_channels=yaml.safe_load(
        env["WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS"]))  # fmt: skip
    assert [parse_channel(c).kind for c in fallback.fallback_channels] == ["email"]
    for dep in ("kafka", "redis"):
        assert notifier["depends_on"][dep]["condition"] == "service_healthy"


def test_dockerfile_installs_the_package_and_runs_the_worker():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install" in text and "COPY streams" in text and "COPY detectors" in text
    assert '"watchkeeper", "worker"' in text
