"""Child processes of the dev stack, demo, tests and benches, stopped by their pid.

``WorkerProcess`` runs ``watchkeeper worker`` (or ``notify``) the way an operator starts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["WorkerProcess", "stop_process"]


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Stop a child by its pid: SIGTERM, then SIGKILL if it is still running after
    ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class WorkerProcess:
    """``watchkeeper worker`` (or another long-running ``command``, such as ``notify``) as
    a child process with its output in a log file."""

    broker: str
    redis_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    command: str = "worker"
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")
        cmd = [
            sys.executable,
            "-m",
            "streams",
            self.command,
            "--broker",
            self.broker,
            "--redis",
            self.redis_url,
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ask the worker to stop (SIGTERM), then kill it if it does not."""
        stop_process(self.proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return None if self.proc is None else self.proc.returncode

    def kill(self) -> None:
        """Stop abruptly, as a crash would (SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
