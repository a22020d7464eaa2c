"""A flood of made-up model ids: what it costs the worker, Redis and the people paged.

The probe of the security review: 50,000 distinct model_ids in 60 s, one prediction and
one label each, after ten steady models. Measured with a real worker and a real
notifier (its fallback channel is a webhook inbox in this process) on the embedded
broker and Redis, twice in one run: with the default cap (``max_models`` 10,000 per join
partition) and with no effective cap (the baseline). Reported: the worker's resident
memory growth over the flood, Redis keys added, alerts published by kind, pages that
reached the fallback channel, and ``model_limit`` dead letters.

Orphans are summarised every 10 s here (300 s by default) so that the run sees its pages.

    python -m bench.flood [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import psutil
from aiokafka import AIOKafkaConsumer
from redis import Redis

from streams.dev.process import WorkerProcess
from streams.producer import WatchkeeperProducer
from streams.settings import Settings
from streams.topology import ensure_topics

from .harness import Stack, stack, start_worker
from .report import Row, Suite, markdown

STEADY = 10
FLOOD = 50_000
SECONDS = 60.0


class Inbox:
    """A webhook receiver on loopback that counts the pages it gets."""

    def __init__(self) -> None:
        self.pages: list[dict[str, Any]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                inbox.pages.append(orjson.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/fallback"

    def __enter__(self) -> Inbox:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _publish(
    settings: Settings, models: list[str], seconds: float, t0: int, prefix: str
) -> None:
    """One prediction and one label per model, spread evenly over ``seconds``."""
    async with WatchkeeperProducer(
        settings.bootstrap_servers,
        predictions_topic=settings.topics.predictions,
        ground_truth_topic=settings.topics.ground_truth,
    ) as wk:
        began = time.monotonic()
        step = max(1, len(models) // 200)
        for k in range(0, len(models), step):
            chunk = models[k : k + step]
            for i, model in enumerate(chunk, start=k):
                pid = f"{prefix}-{i}"
                await wk.predict(pid, model, 1, timestamp=t0 + i)
                await wk.label(pid, 1, timestamp=t0 + i + 1)
            await wk.flush()
            ahead = began + seconds * (k + step) / len(models) - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)


async def _alert_kinds(settings: Settings) -> Counter[str]:
    """Kinds of every alert on the topic."""
    consumer = AIOKafkaConsumer(
        settings.topics.alerts,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    kinds: Counter[str] = Counter()
    try:
        while batch := await consumer.getmany(timeout_ms=2000):
            for records in batch.values():
                kinds.update(orjson.loads(r.value)["kind"] for r in records if r.value)
    finally:
        await consumer.stop()
    return kinds


def _keys(redis: Redis, prefix: str) -> tuple[int, int]:
    """Keys under ``prefix``, and how many of them never expire."""
    keys = list(redis.scan_iter(f"{prefix}*", count=10_000))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    return len(keys), sum(1 for ttl in pipe.execute() if ttl == -1)


def _wait(redis: Redis, key: str, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done(redis.hgetall(key)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key}: {redis.hgetall(key)}")
        time.sleep(0.2)


def probe(s: Stack, name: str, max_models: int, flood: int, seconds: float) -> dict[str, Any]:
    settings = s.settings(name, partitions=4, max_models=max_models)
    asyncio.run(ensure_topics(settings))
    env = {"WATCHKEEPER_MAX_MODELS": str(max_models)}
    redis = Redis.from_url(settings.redis_url)
    stats = f"{settings.redis_prefix}stats"
    with Inbox() as inbox:
        notifier = WorkerProcess(
            settings.broker,
            settings.redis_url,
            settings.data_dir.with_name(f"{name}-notifier.log"),
            env={
                "WATCHKEEPER_REDIS_PREFIX": settings.redis_prefix,
                "WATCHKEEPER_TOPIC_ALERTS": settings.topics.alerts,
                "WATCHKEEPER_TOPIC_DLQ": settings.topics.dlq,
                "WATCHKEEPER_APP_ID": settings.app_id,
                "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS": '["127.0.0.1"]',
                "WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS": orjson.dumps(
                    [f"webhook:{inbox.url}"]
                ).decode(),
                "WATCHKEEPER_NOTIFY_ORPHAN_SUMMARY_S": "10",
                "WATCHKEEPER_NOTIFY_GROUP_WAIT_S": "1",
            },
            command="notify",
        ).start()
        worker = start_worker(settings, env)
        try:
            assert worker.proc is not None
            proc = psutil.Process(worker.proc.pid)
            t0 = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000
            steady = [f"steady-{i % STEADY}" for i in range(STEADY * 20)]
            asyncio.run(_publish(settings, steady, 0.0, t0, "steady"))
            _wait(redis, stats, lambda h: int(h.get(b"joined", 0)) >= len(steady), 120)
            rss0, (keys0, forever0) = proc.memory_info().rss, _keys(redis, settings.redis_prefix)
            models = [f"made-up-{i:06d}" for i in range(flood)]
            began = time.monotonic()
            asyncio.run(_publish(settings, models, seconds, t0 + 1_000_000, "flood"))
            total = len(steady) + flood

            def processed(h: dict[bytes, bytes]) -> bool:
                return int(h.get(b"predictions", 0)) + int(h.get(b"dlq", 0)) >= total

            _wait(redis, stats, processed, 300)
            took = time.monotonic() - began
            rss1 = proc.memory_info().rss
            time.sleep(25)  # two orphan windows for the notifier's summaries, then count
            keys1, forever1 = _keys(redis, settings.redis_prefix)
            alerts = asyncio.run(_alert_kinds(settings))
            raw = redis.hgetall(f"{settings.redis_prefix}dlq")
            dlq = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        finally:
            worker.stop()
            notifier.stop()
            redis.close()
        return {
            "seconds": took,
            "rss_growth_mib": (rss1 - rss0) / 2**20,
            "redis_keys_added": keys1 - keys0,
            "redis_keys_added_never_expiring": forever1 - forever0,
            "alerts": dict(alerts),
            "pages": len(inbox.pages),
            "page_kinds": dict(Counter(p.get("kind") for p in inbox.pages)),
            "model_limit_dead_letters": dlq.get("model_limit", 0),
        }


def run(quick: bool = False) -> Suite:
    flood, seconds = (2_000, 5.0) if quick else (FLOOD, SECONDS)
    suite = Suite(f"Flood: {flood:,} made-up model ids in {seconds:.0f} s, 4 partitions")
    default = Settings().max_models
    small = 1_000 if not quick else 100
    with stack() as s:
        runs = {
            default: probe(s, "flood-default", default, flood, seconds),
            small: probe(s, "flood-small", small, flood, seconds),
        }
        open_ = probe(s, "flood-open", 10**9, flood, seconds)
    measures = (
        ("worker resident memory growth", "rss_growth_mib", "MiB"),
        ("Redis keys added", "redis_keys_added", "keys"),
        ("... of them never expiring", "redis_keys_added_never_expiring", "keys"),
        ("pages to the fallback channel", "pages", "pages"),
        ("model_limit dead letters", "model_limit_dead_letters", "records"),
    )
    for cap, got in runs.items():
        for what, key, unit in measures:
            base = open_[key]
            suite.rows.append(
                Row(
                    f"{what}, max_models {cap:,}",
                    got[key],
                    unit,
                    "no cap, same run",
                    base,
                    got[key] / base if base else None,
                )
            )
    suite.details = {"runs": {str(k): v for k, v in runs.items()}, "uncapped": open_}
    labelled = [(f"max_models {cap:,}", got) for cap, got in runs.items()] + [("no cap", open_)]
    for label, got in labelled:
        suite.notes.append(
            f"{label}: alerts {got['alerts']}, "
            f"pages {got['page_kinds']}, flood processed in {got['seconds']:.0f} s"
        )
    suite.notes.append(
        "one prediction and one label per made-up model, so each partition admits its own "
        "max_models of them (up to 4 x max_models in all); orphans summarised every 10 s"
    )
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(markdown([run(args.quick).as_dict()]))


if __name__ == "__main__":
    main()
