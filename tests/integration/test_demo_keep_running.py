"""``demo --keep-running``: the embedded stack stays up for status, alerts, the web page and
the metrics, and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streams.dev.process import stop_process


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = log.read_text(errors="replace")
        if text in out:
            return out
        assert proc.poll() is None, out[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.separate  # 20-40 s: in .ci/run's own step, to keep the suite under 10 min
def test_the_demo_stack_stays_up_for_the_commands_until_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    argv = [sys.executable, "-m", "streams", "demo", "--models", "6"]
    argv += ["--predictions-per-model", "300", "--keep-running"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        text = _wait_for(log, "The stack stays up until Ctrl-C", proc, timeout=150)
        broker = re.search(r"WATCHKEEPER_BROKER=(\S+)", text)
        redis = re.search(r"WATCHKEEPER_REDIS_URL=(\S+)", text)
        page = re.search(r"web page\s+(http://127\.0\.0\.1:\d+/)", text)
        metrics = re.findall(r"(http://127\.0\.0\.1:\d+/metrics)", text)
        worker_pid = re.search(r"worker pid (\d+)", text)
        assert broker and redis and page and worker_pid and len(metrics) == 2, text[-2000:]
        env = {
            **os.environ,
            "WATCHKEEPER_BROKER": broker.group(1),
            "WATCHKEEPER_REDIS_URL": redis.group(1),
        }
        status = subprocess.run(
            [sys.executable, "-m", "streams", "status", "--json"],
            env=env, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        models = json.loads(status.stdout)
        assert len([m for m in models if m["model_id"] != "*"]) == 6
        assert sum(m["orphan"] for m in models) == 1  # the demo leaves one model unowned
        alerts = subprocess.run(
            [sys.executable, "-m", "streams", "alerts", "list", "--json"],
            env=env, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        listed = json.loads(alerts.stdout)
        assert any(e["alert"]["kind"] == "orphaned_model" for e in listed)
        report = subprocess.run(
            [sys.executable, "-m", "streams", "report", "--since", "30d", "--format", "json"],
            env=env, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        cards = json.loads(report.stdout)["scorecards"]
        assert cards[0]["models"][0]["orphan"]  # nobody's models first, the orphan on top
        assert sum(len(c["models"]) for c in cards) == 6
        with urllib.request.urlopen(page.group(1), timeout=10) as response:
            html = response.read().decode()
        assert all(m["model_id"] in html for m in models)
        for url in metrics:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert "watchkeeper_build_info" in response.read().decode()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop_process(proc)
                raise
        else:
            code = proc.returncode
    assert code == 0, log.read_text()[-3000:]
    assert "stopping…" in log.read_text()
    assert not _alive(int(worker_pid.group(1)))  # the processes it started are gone
