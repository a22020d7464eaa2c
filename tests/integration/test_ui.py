"""``watchkeeper ui`` over HTTP against what a real worker wrote: a seeded scenario through
the worker on the real broker and Redis, then the UI process on a free loopback port. Its
pages are parsed and checked against Redis (health snapshots, series, owners) and the
alerts topic (read with another client, confluent-kafka)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
import redis
from helpers.html_dom import Node, parse
from helpers.third_party import read_topic
from helpers.ui import fetch, start_ui, ui_env
from redis.asyncio import Redis as AsyncRedis
from test_pipeline import isolated_settings, register_owners_with, run_scenario, worker_for

from streams.dev.demo import MALFORMED
from streams.dev.simulate import Scenario, build_scenario
from streams.engine.series import SERIES_BUCKET_MS
from streams.settings import Settings
from streams.store.health import HealthStore
from streams.topology import ensure_topics
from streams.ui.pages import FLEET_COLUMNS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COL = {name: i for i, name in enumerate(FLEET_COLUMNS)}


def pct(value: str | bytes | None) -> str:
    return "—" if value in (None, "", b"") else f"{float(value) * 100:.1f}%"


def rows(doc: Node, table_id: str) -> list[Node]:
    return doc.one("table", id=table_id).one("tbody").find_all("tr")


def cells(row: Node) -> list[str]:
    return [td.text() for td in row.find_all("td")]


def counted(scenario: Scenario, model: str) -> dict[int, tuple[int, int, int]]:
    """Per hour of prediction time, the model's predictions, labelled predictions
    and wrong ones, counted from the scenario's events (independently of the worker)."""
    predictions = {e["prediction_id"]: e for k, e in scenario.events if k == "p"}
    labels = {e["prediction_id"]: e["label"] for k, e in scenario.events if k == "g"}
    out: dict[int, tuple[int, int, int]] = {}
    for pid, p in predictions.items():
        if p["model_id"] != model:
            continue
        bucket = p["timestamp"] - p["timestamp"] % SERIES_BUCKET_MS
        n, labelled, wrong = out.get(bucket, (0, 0, 0))
        label = labels.get(pid)
        out[bucket] = (
            n + 1,
            labelled + (label is not None),
            wrong + (label is not None and label != p["prediction"]),
        )
    return out


async def read_series(settings: Settings, model: str) -> dict[int, tuple[int, int, int]]:
    client = AsyncRedis.from_url(settings.redis_url)
    try:
        points = await HealthStore(client, settings.redis_prefix).series(model)
    finally:
        await client.aclose()
    return {p.t_ms: (p.predictions, p.outcomes, round(p.error_sum)) for p in points}


def test_the_ui_shows_what_the_worker_wrote_and_the_alerts_topic_holds(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    asyncio.run(ensure_topics(settings))
    scenario = build_scenario(models=4, predictions_per_model=1000, degraded=1, seed=5)
    orphan = asyncio.run(register_owners_with(settings, scenario))
    worker = worker_for(settings, tmp_path).start()
    try:
        asyncio.run(run_scenario(settings, kafka_bootstrap, scenario, worker, dlq=len(MALFORMED)))
    finally:
        code = worker.stop()
    assert code == 0, worker.log_tail()
    degraded = scenario.degraded[0].model_id

    # what the pages must show, read straight from Redis and the topic
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    prefix = settings.redis_prefix
    health = {m.model_id: r.hgetall(f"{prefix}health:{m.model_id}") for m in scenario.models}
    owners = {k: orjson.loads(v)["owner"] for k, v in r.hgetall(f"{prefix}owners").items()}
    r.close()
    # the history is exact: each bucket counts the model's predictions made in it, and
    # those labelled and wrong, however fast the worker went through the scenario
    expected = counted(scenario, degraded)
    assert asyncio.run(read_series(settings, degraded)) == expected
    published = [
        orjson.loads(rec.value)
        for rec in read_topic(kafka_bootstrap, settings.topics.alerts)
        if rec.value is not None
    ]
    mine = {a["alert_id"]: a for a in published if a["model_id"] == degraded}
    assert any(a["kind"] == "performance_degradation" for a in mine.values())
    assert all(h for h in health.values()), "a model without a health snapshot"

    ui = start_ui(settings, tmp_path)
    try:
        status, body, headers = fetch(ui.url + "/")
        assert status == 200, body
        assert "script-src" not in headers["Content-Security-Policy"]
        fleet = rows(parse(body), "fleet")
        assert sorted(row.attrs["data-model"] or "" for row in fleet) == sorted(
            m.model_id for m in scenario.models
        )
        # the orphan is the only critical model (no notifier ran: no incident is open)
        assert fleet[0].attrs["data-model"] == orphan
        assert [row.attrs["class"] for row in fleet].count("state-critical") == 1
        for row in fleet:
            model = row.attrs["data-model"] or ""
            got, snap = cells(row), health[model]
            assert got[COL["Owner"]] == ("ORPHAN" if model == orphan else owners[model]), model
            assert got[COL["Version"]] == snap["model_version"]
            assert got[COL["Error now"]] == pct(snap["recent_error_rate"]), model
            assert got[COL["Baseline"]] == pct(snap["error_rate"]), model
            assert got[COL["Label coverage"]] == pct(snap.get("label_coverage")), model

        link = next(r for r in fleet if r.attrs["data-model"] == degraded).one("a").attrs["href"]
        assert link == f"/models/{quote(degraded, safe='')}"
        status, body, _ = fetch(ui.url + link)
        assert status == 200, body
        page = parse(body)
        (row,) = rows(page, "status")
        assert cells(row)[COL["Error now"]] == pct(health[degraded]["recent_error_rate"])
        assert cells(row)[COL["Owner"]] == owners[degraded]
        # the chart: a coverage point per bucket with predictions, an error
        # point per bucket with outcomes, in time order
        chart = page.one(id="chart")
        for name, buckets in (
            ("coverage", [b for b, (n, _, _) in expected.items() if n]),
            ("error", [b for b, (_, labelled, _) in expected.items() if labelled]),
        ):
            xs = [
                float(p.split(",")[0])
                for line in chart.find_all("polyline", class_=name)
                for p in (line.attrs["points"] or "").split()
            ]
            assert len(xs) == len(buckets) > 1 and xs == sorted(xs), name
        # the alerts: every one the topic holds for this model, as published
        listed = rows(page, "alerts")
        ids = [
            (r.one("td", class_="id").one("a").attrs["href"] or "").removeprefix("/alerts/")
            for r in listed
        ]
        missing = {i: (mine[i]["kind"], mine[i]["status"]) for i in set(mine) - set(ids)}
        assert not missing, f"alerts on the topic but not on the page: {missing}"
        assert sorted(ids) == sorted(mine)
        for r_, alert_id in zip(listed, ids, strict=True):
            alert = mine[alert_id]
            assert r_.one("td", class_="kind").text() == alert["kind"]
            assert r_.one("td", class_="severity").text() == alert["severity"]
            assert r_.one("td", class_="paged").text() == "no"  # no notifier ran
            if alert["kind"] == "performance_degradation":
                b, a = alert["before"]["error_rate"], alert["after"]["error_rate"]
                what = r_.one("td", class_="what").text()
                assert what.startswith(f"error rate {b * 100:.1f}% → {a * 100:.1f}%")
        detected = [mine[i]["detected_at"] for i in ids]
        assert detected == sorted(detected, reverse=True)  # newest first

        status, body, _ = fetch(f"{ui.url}/alerts/{ids[0]}")
        assert status == 200 and ids[0] in parse(body).one("dl", id="alert").text()
        status, body, _ = fetch(ui.url + "/models/" + quote("<no such model>", safe=""))
        assert status == 404 and "<no such model>" in parse(body).one(id="not-found").text()
        assert fetch(ui.url + "/healthz")[:2] == (200, "ok")
    finally:
        code = ui.stop()
    assert code == 0, ui.log()
    assert "watchkeeper ui stopped" in ui.log()


def test_a_port_in_use_is_a_one_line_error(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, redis_url, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "streams", "ui", "--port", str(port), "--redis", redis_url],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **ui_env(settings)},
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"watchkeeper: cannot listen on 127.0.0.1:{port}: the port is in use"
    ]
