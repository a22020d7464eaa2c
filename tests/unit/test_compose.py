"""docker-compose.yml is validated statically: there is no Docker engine here."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.contract.notification import parse_channel
from streams.settings import KafkaSecurity, NotifySettings, Settings

ROOT = Path(__file__).resolve().parents[2]
SECRETS_EXAMPLE = ROOT / "secrets.env.example"
# every variable a WATCHKEEPER_* name can be: a top-level setting or one of a nested model
SETTING_VARIABLES = (
    {f"WATCHKEEPER_{name.upper()}" for name in Settings.model_fields}
    | {f"WATCHKEEPER_KAFKA_{name.upper()}" for name in KafkaSecurity.model_fields}
    | {f"WATCHKEEPER_NOTIFY_{name.upper()}" for name in NotifySettings.model_fields}
)


def _services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as docker compose reads an env_file (no quotes, # comments)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


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
    assert set(env) <= SETTING_VARIABLES, set(env) - SETTING_VARIABLES
    assert env["WATCHKEEPER_BROKER"].startswith("kafka://kafka:")
    assert env["WATCHKEEPER_REDIS_URL"].startswith("redis://redis:")
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
    assert set(env) <= SETTING_VARIABLES, set(env) - SETTING_VARIABLES
    fallback = NotifySettings(fallback_channels=yaml.safe_load(
        env["WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS"]))  # fmt: skip
    assert [parse_channel(c).kind for c in fallback.fallback_channels] == ["email"]
    for dep in ("kafka", "redis"):
        assert notifier["depends_on"][dep]["condition"] == "service_healthy"


def test_dockerfile_installs_the_package_and_runs_the_worker():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install" in text and "COPY streams" in text and "COPY detectors" in text
    assert '"watchkeeper", "worker"' in text


# --- security: SASL on Kafka, a password on Redis, secrets only in env files --------------


@pytest.mark.parametrize("service", ["worker", "notifier"])
def test_watchkeeper_services_build_valid_settings_from_their_environment(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's environment plus secrets.env.example, as the container sees them."""
    spec = _services()[service]
    assert spec["env_file"] == ["secrets.env"]
    variables = {**_env_file(SECRETS_EXAMPLE), **spec["environment"]}
    assert set(variables) <= SETTING_VARIABLES, set(variables) - SETTING_VARIABLES
    for name in [n for n in os.environ if n.startswith("WATCHKEEPER_")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        if "${" not in str(value):  # host interpolation: unset here
            monkeypatch.setenv(name, str(value))
    settings = Settings()
    assert settings.kafka.uses_sasl and settings.redis_password is not None


def _listeners(value: str) -> dict[str, str]:
    """NAME://host:port,... as {NAME: host:port}."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_the_workers_kafka_settings_match_the_brokers_sasl_listener() -> None:
    services = _services()
    kafka = services["kafka"]["environment"]
    protocols = dict(
        item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    mechanisms = kafka["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    command = "\n".join(services["kafka"]["command"])
    for service in ("worker", "notifier"):
        env = services[service]["environment"]
        address = env["WATCHKEEPER_BROKER"].removeprefix("kafka://")
        (listener,) = [name for name, where in advertised.items() if where == address]
        assert protocols[listener] == env["WATCHKEEPER_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["WATCHKEEPER_KAFKA_SASL_MECHANISM"] in mechanisms
        # the listener's users (JAAS, built at start) include the worker's user, with the
        # password of the same variable the worker reads from secrets.env
        mechanism = env["WATCHKEEPER_KAFKA_SASL_MECHANISM"]
        variable = f"KAFKA_LISTENER_NAME_{listener}_{mechanism}_SASL_JAAS_CONFIG"
        assert f'export {variable}="$$jaas"' in command
        user = env["WATCHKEEPER_KAFKA_SASL_USERNAME"]
        assert f'user_{user}=\\"$${{WATCHKEEPER_KAFKA_SASL_PASSWORD}}\\"' in command
    # nothing but the container's own loopback answers without SASL
    for name, protocol in protocols.items():
        if protocol == "PLAINTEXT" and name != kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]:
            assert advertised[name].startswith("127.0.0.1:"), name
    assert "127.0.0.1:9095" in services["kafka"]["healthcheck"]["test"][1]


def test_redis_requires_the_password_of_secrets_env() -> None:
    redis = _services()["redis"]
    assert redis["env_file"] == ["secrets.env"]
    command = " ".join(redis["command"])
    assert '--requirepass "$$WATCHKEEPER_REDIS_PASSWORD"' in command
    assert "$$WATCHKEEPER_REDIS_PASSWORD" in redis["healthcheck"]["test"][1]
    assert "WATCHKEEPER_REDIS_PASSWORD" in _env_file(SECRETS_EXAMPLE)


def test_no_password_is_written_in_the_compose_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for value in _env_file(SECRETS_EXAMPLE).values():
        assert value not in text
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|JAAS")
    for name, spec in _services().items():
        for key, value in (spec.get("environment") or {}).items():
            if secret.search(key):  # only ever interpolated from the host
                assert re.fullmatch(r"\$\{[A-Z_]+(:-)?\}", str(value)), (name, key, value)
    # passwords reach commands only as variables of the container's environment
    assert not re.search(r"(requirepass|password=)\s*\\?\"?[^\s\"$\\]", text)
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "secrets.env" in ignored and "secrets.env.example" not in ignored


# --- monitoring the monitor: Prometheus and Grafana ----------------------------------------


@pytest.mark.parametrize(("service", "port"), [("worker", "9464"), ("notifier", "9465")])
def test_watchkeeper_services_serve_metrics_on_the_contract_port(service: str, port: str) -> None:
    spec = _services()[service]
    assert spec["environment"]["WATCHKEEPER_METRICS_PORT"] == port
    assert spec["expose"] == [port]
    assert "WATCHKEEPER_METRICS_PORT" in SETTING_VARIABLES  # Settings.metrics_port


def test_monitoring_images_are_pinned_and_their_uis_published_on_loopback_only() -> None:
    """A floating tag changes the stack under a running site; the UIs have no TLS, and
    Prometheus has no login at all, so neither is reachable from other hosts."""
    services = _services()
    for name, image in (("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")):
        spec = services[name]
        repository, _, tag = spec["image"].partition(":")
        assert repository == image and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), spec["image"]
        for published in spec["ports"]:
            assert published.startswith("127.0.0.1:"), (name, published)
    env = services["grafana"]["environment"]
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "GF_AUTH_ANONYMOUS_ENABLED" not in env or env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
