"""A broker address that is not Kafka is one line within seconds, not 40 s of aiokafka."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from streams.cli.main import main
from streams.connections import check_broker
from streams.errors import WatchkeeperError
from streams.settings import KafkaSecurity


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (say, a stuck proxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_a_port_that_never_answers_is_named_after_the_check_timeout(mute_port: int) -> None:
    address = f"127.0.0.1:{mute_port}"
    with pytest.raises(WatchkeeperError) as caught:
        asyncio.run(check_broker(address, KafkaSecurity(), timeout_s=0.5))
    message = str(caught.value)
    assert message.startswith(f"no Kafka broker answered at {address} within 0.5 s")
    assert "\n" not in message


def test_a_port_that_speaks_something_else_fails_the_command_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An HTTP-like server that answers Kafka's request with garbage and hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def answer() -> None:
        server.settimeout(5)
        try:
            while True:
                conn, _ = server.accept()
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                conn.close()
        except OSError:
            return

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        argv = ["simulate", "--broker", f"127.0.0.1:{port}", "--models", "2"]
        assert main(argv) == 2
    finally:
        server.close()
        thread.join()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("watchkeeper:")]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], err
    assert "Traceback" not in err
