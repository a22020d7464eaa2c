"""The UI in a real browser: Debian's headless chromium loads the pages served by
``watchkeeper ui`` on loopback, over health snapshots written through ``HealthStore`` into
the real Redis and alerts published to a real topic. The DOM the browser built has the
fleet table, and its screenshots are real, non-blank PNGs (kept in .ci/artifacts/)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from helpers.html_dom import parse
from helpers.ui import start_ui
from PIL import Image
from redis.asyncio import Redis
from test_pipeline import isolated_settings

from detectors.base import Change
from streams.contract.alerts import build_alert, build_orphan_alert
from streams.settings import Settings
from streams.store.health import SERIES_BUCKET_MS, HealthStore
from streams.store.owners import Owner, OwnerRegistry, parse_channel
from streams.topology import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".ci" / "artifacts"
WINDOW = (1280, 900)
START = 1_795_000_000_000 - 1_795_000_000_000 % SERIES_BUCKET_MS
BUCKETS = 96  # four days of hourly points
HOSTILE = '<img src=x onerror="alert(1)">/ü'
OWNED = ("fraud-eu", "churn-us", "eta-apac")


async def seed(settings: Settings) -> list[dict]:
    """A day of snapshots for four models (fraud-eu degrades halfway, the hostile id has
    no owner), owners for three, and two alerts on the alerts topic."""
    redis = Redis.from_url(settings.redis_url)
    try:
        health = HealthStore(redis, settings.redis_prefix)
        for b in range(BUCKETS):
            at = START + b * SERIES_BUCKET_MS + 60_000
            snapshots = {}
            series: dict[str, dict[int, list[float]]] = {}
            for k, model in enumerate((*OWNED, HOSTILE)):
                base = 0.03 + 0.01 * k
                recent = base + (0.16 if model == "fraud-eu" and b >= BUCKETS // 2 else 0)
                snapshots[model] = {
                    "model_version": "2.1.0",
                    "outcomes": 40 * (b + 1),
                    "error_rate": round(base + 0.002 * (b % 5), 6),
                    "recent_error_rate": round(recent + 0.004 * ((b * (k + 3)) % 5), 6),
                    "last_event_time_ms": at,
                    "predictions_seen": 50 * (b + 1),
                    "last_prediction_ms": at,
                    "silent": 0,
                    "label_coverage": round(0.78 + 0.02 * ((b + k) % 4), 6),
                }
                # the chart's history: counts of 50 predictions giving those rates
                labelled = round(50 * (0.78 + 0.02 * ((b + k) % 4)))
                wrong = (recent + 0.004 * ((b * (k + 3)) % 5)) * labelled
                series[model] = {at - at % SERIES_BUCKET_MS: [50, labelled, wrong]}
            await health.put_health(snapshots, {}, series)
        await health.put_absolute({f"model:{m}": {"predictions@0": 50 * BUCKETS} for m in OWNED})
        await health.put_absolute({f"model:{HOSTILE}": {"predictions@0": 50 * BUCKETS}})
        await OwnerRegistry(redis, settings.redis_prefix).import_many(
            Owner(
                model_id=m,
                owner=f"team-{m.split('-')[0]}",
                channels=(parse_channel("webhook:https://hooks.example.com/x"),),
                runbook=f"https://runbooks.example.com/{m}",
                updated_at_ms=START,
            )
            for m in OWNED
        )
    finally:
        await redis.aclose()
    change_at = START + (BUCKETS // 2) * SERIES_BUCKET_MS + 20 * 60_000
    alerts = [
        build_alert(
            Change("adwin", "increase", 2100, change_at, 0.041, 1900, 0.201, 200),
            model_id="fraud-eu",
            model_version="2.1.0",
            detected_at=datetime.fromtimestamp(change_at / 1000 + 5, tz=UTC),
            config_fingerprint="f" * 12,
        ),
        build_orphan_alert(
            HOSTILE, detected_at=datetime.fromtimestamp(START / 1000, tz=UTC), cooldown_s=3600
        ),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for a in alerts:
            await producer.send_and_wait(settings.topics.alerts, orjson.dumps(a))
    finally:
        await producer.stop()
    return alerts


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is missing: install it with `apt-get install -y chromium`")
    return found


def browse(binary: str, profile: Path, *args: str, timeout: float = 90) -> str:
    """Run headless chromium once (own profile, no network but the URL); its stdout. The
    browser and its helper processes are killed by their process group if it hangs."""
    proc = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--disable-extensions",
            "--disable-sync",
            "--disable-background-networking",
            "--disable-component-update",
            "--hide-scrollbars",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the helpers die with it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium {' '.join(args)} did not finish within {timeout:.0f}s")
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def screenshot(binary: str, profile: Path, url: str, path: Path) -> np.ndarray:
    """The page as chromium draws it, kept in .ci/artifacts/ under ``path``'s name."""
    browse(binary, profile, f"--screenshot={path}", url)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / path.name)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    with Image.open(path) as image:
        assert image.size == WINDOW
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return pixels


def assert_not_blank(pixels: np.ndarray, what: str) -> None:
    """Real content: varied pixels, and much of the page not the background colour."""
    assert pixels.std() > 10, f"{what}: a flat image (std {pixels.std():.1f})"
    colours = Counter(map(tuple, pixels.reshape(-1, 3)[::7]))
    background, count = colours.most_common(1)[0]
    assert len(colours) > 50, f"{what}: only {len(colours)} colours"
    assert count / sum(colours.values()) < 0.9, f"{what}: {background} fills the page"


def test_chromium_renders_the_fleet_and_a_model_page(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    binary = chromium()
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    alerts = asyncio.run(seed(settings))
    ui = start_ui(settings, tmp_path)
    try:
        dom = parse(browse(binary, tmp_path / "profile", "--dump-dom", ui.url + "/"), strict=False)
        rows = dom.one("table", id="fleet").one("tbody").find_all("tr")
        models = [r.attrs["data-model"] for r in rows]
        # worst first: the orphan, then the three owned ones (no incident open) by id
        assert models == [HOSTILE, *sorted(OWNED)]
        first = [td.text() for td in rows[0].find_all("td")]
        assert first[1] == " ".join(HOSTILE.split()) and first[2] == "ORPHAN"
        assert dom.find_all("img") == [] and dom.find_all("script") == []
        fraud = next(r for r in rows if r.attrs["data-model"] == "fraud-eu")
        assert [td.text() for td in fraud.find_all("td")][2] == "team-fraud"

        fleet_png = tmp_path / "ui-fleet.png"
        model_png = tmp_path / "ui-model.png"
        assert_not_blank(screenshot(binary, tmp_path / "profile", ui.url + "/", fleet_png), "/")
        model_url = ui.url + "/models/fraud-eu"
        page = parse(browse(binary, tmp_path / "profile", "--dump-dom", model_url), strict=False)
        assert len(page.one(id="chart").find_all("polyline", class_="error")) == 1
        listed = page.one("table", id="alerts").one("tbody").find_all("tr")
        assert [r.one("td", class_="kind").text() for r in listed] == [alerts[0]["kind"]]
        pixels = screenshot(binary, tmp_path / "profile", model_url, model_png)
        assert_not_blank(pixels, "/models/fraud-eu")
    finally:
        code = ui.stop()
    assert code == 0, ui.log()
