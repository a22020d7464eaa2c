"""``watchkeeper ui`` as a child process on a free loopback port, for the UI's integration
and browser tests: started the way an operator starts it, stopped by its pid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers.pipeline import settings_env as ui_env
from streams.dev.process import stop_process
from streams.settings import Settings

__all__ = ["UiProcess", "fetch", "start_ui"]

READY = re.compile(r"watchkeeper ui ready: (http://127\.0\.0\.1:\d+)/")


@dataclass
class UiProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after 10 s); the exit code."""
        stop_process(self.proc, timeout=10)
        return self.proc.returncode


def start_ui(settings: Settings, tmp: Path, *, timeout: float = 30.0) -> UiProcess:
    """``python -m streams ui --port 0`` against the test's broker, Redis and topics;
    returns once it printed its ready line (the URL with the port it got)."""
    log_path = tmp / "ui.log"
    log = open(log_path, "wb")  # the child writes it; closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams",
            "ui",
            "--port",
            "0",
            "--broker",
            settings.broker,
            "--redis",
            settings.redis_url,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **ui_env(settings)},
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = READY.search(log_path.read_text(errors="replace"))
        if found:
            return UiProcess(proc, found.group(1), log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop_process(proc)
    raise AssertionError(f"the UI did not get ready: {log_path.read_text(errors='replace')}")


def fetch(url: str, timeout: float = 30.0) -> tuple[int, str, dict[str, str]]:
    """GET ``url``: status, body and headers, for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)
