"""Every Kafka client the project creates gets the configured TLS and SASL options.

Each construction site is driven until its client is built, with the client class
replaced by a recorder, and the keywords it received are compared with what each
protocol and mechanism must produce (written out here, not computed by the code under
test). An AST check then makes sure no construction site bypasses
:func:`streams.connections.aiokafka_kwargs`, and that the Faust app gets its credentials.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from helpers.tls import Pki, make_pki
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from detectors.config import DetectorSettings
from streams.connections import aiokafka_kwargs, kafka_security_kwargs
from streams.errors import ConfigError
from streams.settings import KafkaSecurity, Settings
from streams.worker.broker_auth import faust_credentials

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = "127.0.0.1:1"
USER, PASSWORD = "wk-user", "wk-secret"

# (protocol, mechanism, mutual TLS)
CASES = [
    ("PLAINTEXT", None, False),
    ("SSL", None, False),
    ("SSL", None, True),
    ("SASL_PLAINTEXT", "PLAIN", False),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", False),
    ("SASL_PLAINTEXT", "SCRAM-SHA-512", False),
    ("SASL_SSL", "PLAIN", False),
    ("SASL_SSL", "SCRAM-SHA-256", False),
    ("SASL_SSL", "SCRAM-SHA-512", True),
]
CASE_IDS = [f"{p}-{m or 'none'}{'-mtls' if t else ''}" for p, m, t in CASES]
SECURITY_KEYS = {
    "bootstrap_servers",
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def security_for(case: tuple[str, str | None, bool], pki: Pki) -> KafkaSecurity:
    protocol, mechanism, mutual = case
    options: dict[str, Any] = {"security_protocol": protocol}
    if mechanism is not None:
        options |= {"sasl_mechanism": mechanism, "sasl_username": USER, "sasl_password": PASSWORD}
    if "SSL" in protocol:
        options["ssl_cafile"] = pki.ca
        if mutual:
            options |= {"ssl_certfile": pki.client_cert, "ssl_keyfile": pki.client_key}
    return KafkaSecurity(**options)


def assert_secured(kwargs: dict[str, Any], case: tuple[str, str | None, bool]) -> None:
    """The security keywords a client received are exactly those of ``case``."""
    protocol, mechanism, _ = case
    want: dict[str, Any] = {"security_protocol": protocol}
    if mechanism is not None:
        want |= {
            "sasl_mechanism": mechanism,
            "sasl_plain_username": USER,
            "sasl_plain_password": PASSWORD,
        }
    got = {k: v for k, v in kwargs.items() if k in SECURITY_KEYS - {"bootstrap_servers"}}
    context = got.pop("ssl_context", None)
    assert got == want
    if "SSL" not in protocol:
        assert context is None
        return
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert {"commonName": "watchkeeper-test-ca"} in subjects


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request: pytest.FixtureRequest) -> tuple[str, str | None, bool]:
    return request.param


@pytest.fixture
def settings(case: tuple[str, str | None, bool], pki: Pki) -> Settings:
    return Settings(broker=f"kafka://{BOOTSTRAP}", kafka=security_for(case, pki))


class Stop(Exception):
    """Raised by a recorded client's start(): the site has built its client."""


class Clients:
    """Replaces the aiokafka client classes in the given modules by recorders."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.built: list[tuple[str, dict[str, Any]]] = []

    def fake(self, module: Any, name: str, *, starts: bool = False) -> None:
        built = self.built

        class Recorder:
            def __init__(self, *topics: str, **kwargs: Any) -> None:
                built.append((name, kwargs))

            async def start(self) -> None:
                if not starts:
                    raise Stop

            async def bootstrap(self) -> None:  # AIOKafkaClient's start
                if not starts:
                    raise Stop

            async def stop(self) -> None:
                pass

            async def close(self) -> None:
                pass

            def subscribe(self, *args: Any, **kwargs: Any) -> None:
                pass

            async def list_topics(self) -> list[str]:
                return ["alerts", "watchkeeper-dlq"]

        self.monkeypatch.setattr(module, name, Recorder)

    def only(self) -> dict[str, Any]:
        assert len(self.built) == 1, self.built
        return self.built[0][1]


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Clients:
    return Clients(monkeypatch)


# --- the one mapping --------------------------------------------------------------------


def test_aiokafka_kwargs_per_protocol_and_mechanism(case: Any, pki: Pki) -> None:
    kwargs = aiokafka_kwargs(BOOTSTRAP, security_for(case, pki))
    assert kwargs["bootstrap_servers"] == BOOTSTRAP
    assert set(kwargs) <= SECURITY_KEYS
    assert_secured(kwargs, case)


@given(
    protocol=st.sampled_from(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
    mechanism=st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
    user=st.text(min_size=1, max_size=20),
    password=st.text(min_size=1, max_size=40),
)
def test_faust_gets_the_same_options_as_every_aiokafka_client(
    protocol: str, mechanism: str, user: str, password: str
) -> None:
    """What Faust's driver derives from the credentials is what our clients get."""
    sasl = protocol.startswith("SASL")
    kafka = KafkaSecurity(
        security_protocol=protocol,
        **(
            {"sasl_mechanism": mechanism, "sasl_username": user, "sasl_password": password}
            if sasl
            else {}
        ),
    )
    ours = kafka_security_kwargs(kafka)
    faust_side = credentials_to_aiokafka_auth(faust_credentials(kafka), None)
    ours_context, faust_context = ours.pop("ssl_context", None), faust_side.pop("ssl_context", None)
    assert faust_side == ours
    assert (ours_context is None) == (faust_context is None) == ("SSL" not in protocol)
    if sasl:
        assert (ours["sasl_plain_username"], ours["sasl_plain_password"]) == (user, password)


# --- every construction site ------------------------------------------------------------


def test_broker_check(settings: Settings, case: Any, clients: Clients) -> None:
    import streams.connections as connections

    clients.fake(connections, "AIOKafkaClient")
    with pytest.raises(Stop):
        asyncio.run(connections.check_broker(settings.bootstrap_servers, settings.kafka))
    assert clients.only()["bootstrap_servers"] == BOOTSTRAP
    assert_secured(clients.only(), case)


def test_topic_creation(settings: Settings, case: Any, clients: Clients) -> None:
    import streams.connections as connections
    import streams.topology as topology

    clients.fake(connections, "AIOKafkaClient", starts=True)  # the broker check first
    clients.fake(topology, "AIOKafkaAdminClient")
    with pytest.raises(Stop):
        asyncio.run(topology.ensure_topics(settings))
    assert [name for name, _ in clients.built] == ["AIOKafkaClient", "AIOKafkaAdminClient"]
    for _, kwargs in clients.built:
        assert kwargs["bootstrap_servers"] == BOOTSTRAP
        assert_secured(kwargs, case)


def test_changelog_loader(settings: Settings, case: Any, clients: Clients) -> None:
    import streams.worker.state as state

    clients.fake(state, "AIOKafkaConsumer")
    with pytest.raises(Stop):
        asyncio.run(state.load_changelog(BOOTSTRAP, "c", 0, {}, "k", kafka=settings.kafka))
    assert_secured(clients.only(), case)


def test_partition_steps_pass_the_worker_security_to_the_loader(
    settings: Settings, case: Any, clients: Clients
) -> None:
    import streams.worker.state as state
    from streams.worker.partition_steps import PartitionSteps

    clients.fake(state, "AIOKafkaConsumer")
    steps = SimpleNamespace(settings=settings, changelog="c", batches=None)
    with pytest.raises(Stop):
        asyncio.run(PartitionSteps._load(steps, 0))  # type: ignore[arg-type]
    assert clients.only()["bootstrap_servers"] == BOOTSTRAP
    assert_secured(clients.only(), case)


def test_worker_offsets_reader(settings: Settings, case: Any, clients: Clients) -> None:
    import streams.worker.app as app

    clients.fake(app, "AIOKafkaConsumer")
    pipeline = SimpleNamespace(settings=settings, _offsets_reader=None)
    with pytest.raises(Stop):
        asyncio.run(app.Pipeline._reader(pipeline))  # type: ignore[arg-type]
    assert_secured(clients.only(), case)


def test_faust_worker_consumer_and_producer(
    settings: Settings, case: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Faust app's own clients, as its aiokafka driver builds them."""
    from streams.worker.app import Pipeline

    built: dict[str, dict[str, Any]] = {}

    def recorder(name: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            built[name] = kwargs
            return SimpleNamespace()

        return build

    async def run() -> None:
        pipeline = Pipeline(settings, DetectorSettings(), 4)
        monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", recorder("consumer"))
        monkeypatch.setattr(aiokafka, "AIOKafkaProducer", recorder("producer"))
        pipeline.app.consumer._thread._create_consumer(loop=asyncio.get_running_loop())
        pipeline.app.producer._new_producer()

    asyncio.run(run())
    assert set(built) == {"consumer", "producer"}
    for kwargs in built.values():
        assert kwargs["bootstrap_servers"] == [BOOTSTRAP]
        assert_secured(kwargs, case)


def test_notifier(settings: Settings, case: Any, clients: Clients) -> None:
    import streams.connections as connections
    import streams.notify.loop as loop
    import streams.topology as topology

    @contextlib.asynccontextmanager
    async def no_redis(_: Settings) -> AsyncIterator[Any]:
        # nothing listens there; no retries, so the notifier's start-up checks fail at once
        client = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
        yield client
        await client.aclose()

    clients.monkeypatch.setattr(loop, "redis_session", no_redis)
    clients.fake(connections, "AIOKafkaClient", starts=True)
    clients.fake(topology, "AIOKafkaAdminClient", starts=True)
    clients.fake(loop, "AIOKafkaProducer", starts=True)
    clients.fake(loop, "AIOKafkaConsumer")
    with pytest.raises(Stop):
        asyncio.run(loop.run_notifier(settings, stop=asyncio.Event()))
    names = [name for name, _ in clients.built]
    assert names == [
        "AIOKafkaClient",
        "AIOKafkaAdminClient",
        "AIOKafkaProducer",
        "AIOKafkaConsumer",
    ]
    for _, kwargs in clients.built:
        assert kwargs["bootstrap_servers"] == BOOTSTRAP
        assert_secured(kwargs, case)


def test_replay_reader_partitions_and_publisher(
    settings: Settings, case: Any, clients: Clients
) -> None:
    import streams.replay.source as source

    clients.fake(source, "AIOKafkaConsumer")
    clients.fake(source, "AIOKafkaProducer")
    with pytest.raises(Stop):
        asyncio.run(source.join_partitions(settings))
    with pytest.raises(Stop):
        asyncio.run(source.read_range(settings, None, start_ms=None, end_ms=None))  # type: ignore[arg-type]
    with pytest.raises(Stop):
        asyncio.run(source.publish_alerts(BOOTSTRAP, "alerts", [], kafka=settings.kafka))
    assert len(clients.built) == 3
    for _, kwargs in clients.built:
        assert kwargs["bootstrap_servers"] == BOOTSTRAP
        assert_secured(kwargs, case)


def test_producer_helper(settings: Settings, case: Any, clients: Clients) -> None:
    import streams.producer as producer

    clients.fake(producer, "AIOKafkaProducer")
    helper = producer.WatchkeeperProducer(
        BOOTSTRAP, security=settings.kafka, request_timeout_ms=1234
    )
    with pytest.raises(Stop):
        asyncio.run(helper.start())
    assert clients.only()["request_timeout_ms"] == 1234  # producer_kwargs pass through
    assert_secured(clients.only(), case)


def test_producer_helper_reads_the_environment_by_default(
    monkeypatch: pytest.MonkeyPatch, clients: Clients
) -> None:
    import streams.producer as producer

    monkeypatch.setenv("WATCHKEEPER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_USERNAME", USER)
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_PASSWORD", PASSWORD)
    clients.fake(producer, "AIOKafkaProducer")
    with pytest.raises(Stop):
        asyncio.run(producer.WatchkeeperProducer(BOOTSTRAP).start())
    assert_secured(clients.only(), ("SASL_PLAINTEXT", "SCRAM-SHA-256", False))


def test_demo_and_simulate_clients(settings: Settings, case: Any, clients: Clients) -> None:
    import streams.dev.demo as demo
    import streams.producer as producer

    clients.fake(producer, "AIOKafkaProducer", starts=True)  # the helper, then the raw one
    clients.fake(demo, "AIOKafkaProducer")
    clients.fake(demo, "AIOKafkaConsumer")
    nothing = SimpleNamespace(events=[])
    with pytest.raises(Stop):
        asyncio.run(demo.produce_scenario(BOOTSTRAP, nothing, settings))  # type: ignore[arg-type]
    collector = demo.AlertCollector(BOOTSTRAP, "alerts", kafka=settings.kafka)
    with pytest.raises(Stop):
        asyncio.run(collector.start())
    assert [name for name, _ in clients.built] == ["AIOKafkaProducer"] * 2 + ["AIOKafkaConsumer"]
    for _, kwargs in clients.built:
        assert kwargs["bootstrap_servers"] == BOOTSTRAP
        assert_secured(kwargs, case)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_username and sasl_password"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"}, "needs sasl_password"),
        ({"sasl_username": "u", "sasl_password": "p"}, "PLAINTEXT never sends them"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
            "sasl_mechanism 'GSSAPI' is not supported",
        ),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}, "not supported"),
        ({"security_protocol": "TLS"}, "PLAINTEXT"),
        ({"ssl_cafile": "/etc/hostname"}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "is not a file"),
        (
            {"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"},
            "ssl_keyfile and ssl_key_password need ssl_certfile",
        ),
    ],
)
def test_inconsistent_security_is_a_clear_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSecurity(**options)


def test_protocol_and_mechanism_are_case_insensitive() -> None:
    kafka = KafkaSecurity(
        security_protocol="sasl_ssl", sasl_mechanism="scram-sha-256", sasl_username="u",
        sasl_password="p",
    )  # fmt: skip
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")


def test_environment_variables_reach_the_nested_model(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_USERNAME", USER)
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("WATCHKEEPER_KAFKA_SSL_CAFILE", str(pki.ca))
    assert_secured(
        aiokafka_kwargs(BOOTSTRAP, Settings().kafka), ("SASL_SSL", "SCRAM-SHA-512", False)
    )


def test_a_file_that_is_not_a_certificate_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    kafka = KafkaSecurity(security_protocol="SSL", ssl_cafile=bogus)
    with pytest.raises(ConfigError, match=f"Kafka TLS: cannot load {bogus}"):
        aiokafka_kwargs(BOOTSTRAP, kafka)


def test_a_key_that_is_not_of_the_certificate_is_a_clear_error(pki: Pki) -> None:
    kafka = KafkaSecurity(
        security_protocol="SSL", ssl_certfile=pki.client_cert, ssl_keyfile=pki.server_key
    )
    with pytest.raises(ConfigError, match="Kafka TLS: cannot load"):
        aiokafka_kwargs(BOOTSTRAP, kafka)


def test_the_password_is_not_in_the_settings_repr() -> None:
    kafka = KafkaSecurity(security_protocol="SASL_SSL", sasl_username=USER, sasl_password=PASSWORD)
    assert PASSWORD not in repr(Settings(kafka=kafka)) and PASSWORD not in str(kafka)


# --- no construction site bypasses the mapping -----------------------------------------

KAFKA_CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "AIOKafkaClient"}
CONNECTION_KEYWORDS = SECURITY_KEYS
REDIS_CONSTRUCTORS = {"Redis", "StrictRedis", "ConnectionPool", "from_url", "from_pool"}
# functions whose security parameter defaults to the environment: inside streams/ each call
# must pass the caller's settings
SECURITY_PARAMETERS = {
    "load_changelog": "kafka",
    "publish_alerts": "kafka",
    "AlertCollector": "kafka",
    "WatchkeeperProducer": "security",
}


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and _name(n.func) == name for n in ast.walk(node))


def _faust_apps(tree: ast.Module) -> set[str]:
    """``App`` and the module's subclasses of ``faust.App``."""
    apps = {"App"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(_name(b) in apps for b in node.bases):
            apps.add(node.name)
    return apps


def connection_sites(root: Path) -> tuple[dict[str, int], list[str]]:
    """Counts of the client construction sites under ``root``, and the offending ones."""
    counts = {"kafka": 0, "faust": 0, "redis": 0}
    offenders: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        where = path.relative_to(root)
        apps = _faust_apps(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            spot = f"{where}:{node.lineno} {name}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name in KAFKA_CLIENTS:
                counts["kafka"] += 1
                spread = [k.value for k in node.keywords if k.arg is None]
                if not any(_calls(v, "aiokafka_kwargs") for v in spread):
                    offenders.append(f"{spot} without **aiokafka_kwargs(...)")
                for key in CONNECTION_KEYWORDS & set(keywords):
                    offenders.append(f"{spot} sets {key} itself")
            elif name in apps and "broker" in keywords:
                counts["faust"] += 1
                credentials = keywords.get("broker_credentials")
                if credentials is None or not _calls(credentials, "faust_credentials"):
                    offenders.append(f"{spot} without broker_credentials=faust_credentials()")
            elif name in REDIS_CONSTRUCTORS:
                counts["redis"] += 1
                if where != Path("connections.py"):
                    offenders.append(f"{spot}: build Redis clients with redis_client(settings)")
            elif name in SECURITY_PARAMETERS and SECURITY_PARAMETERS[name] not in keywords:
                offenders.append(f"{spot} without {SECURITY_PARAMETERS[name]}=")
    return counts, offenders


def test_no_client_construction_bypasses_the_connection_settings() -> None:
    counts, offenders = connection_sites(ROOT / "streams")
    assert offenders == []
    # the check saw the sites it guards: worker (changelog loader, offsets reader), notifier
    # (producer, consumer), replay (3), producer helper, topic admin, demo (2)
    assert counts["kafka"] >= 11 and counts["faust"] >= 1 and counts["redis"] >= 1, counts


def test_the_bypass_check_reports_what_it_must(tmp_path: Path) -> None:
    (tmp_path / "clients.py").write_text(
        "import faust\n"
        "from redis.asyncio import Redis\n"
        "class _App(faust.App):\n    pass\n"
        "a = AIOKafkaConsumer(bootstrap_servers='x')\n"
        "b = AIOKafkaProducer(**aiokafka_kwargs('x', k), security_protocol='PLAINTEXT')\n"
        "c = _App('id', broker='kafka://x')\n"
        "d = Redis.from_url('redis://x')\n"
        "e = load_changelog('x', 't', 0, {}, 'k')\n"
        "f = AIOKafkaAdminClient(**aiokafka_kwargs('x', k))\n"
    )
    counts, offenders = connection_sites(tmp_path)
    assert counts == {"kafka": 3, "faust": 1, "redis": 1}
    assert [o.split(" ", 1)[0] for o in offenders] == [
        "clients.py:5", "clients.py:5", "clients.py:6", "clients.py:7", "clients.py:8",
        "clients.py:9",
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_kafka_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings built here must not pick up a developer's WATCHKEEPER_KAFKA_*."""
    import os

    for name in [n for n in os.environ if n.startswith("WATCHKEEPER_")]:
        monkeypatch.delenv(name)
    yield
