"""Memory per pending (unlabelled) prediction, and per model for the detector bank.

Target (issue 5, item 4): under 300 bytes per pending prediction on average in the
worker's resident memory, with 1M pending predictions over 10,000 models.

In-process figures, each measured in a freshly spawned interpreter (memory one
measurement freed would otherwise pad the next one's RSS):

- the :class:`~streams.join.Joiner` over a plain dict, fed ``parse_predictions`` output
  (ids, timestamps and interned model strings exactly as the worker gets them from JSON),
  as RSS growth and as tracemalloc bytes, against, in the same run, the same predictions
  held in the join's previous representation (a tagged 5-tuple plus one expiry-heap
  ``(expire_at, id)`` tuple per write) and as ``{prediction_id: raw JSON bytes}``;
- the same state after a changelog round trip (each value pickled, unpickled one by one,
  index rebuilt), as a restarted worker holds it;
- the detector bank: tracemalloc of :class:`~detectors.track.ModelTrack` objects, new and
  after 1,000 outcomes each.

Then the real thing: tansu, redis-server and a worker process. A warm-up sends one
prediction per model (so per-model state and the orphaned_model alerts exist before the
baseline), the worker's RSS is read by pid once it is idle, the predictions are produced
with no labels, and its RSS is read again once its Redis counters say all were taken in;
``(after - idle) / predictions`` is the figure. Where gdb may attach, both readings are
repeated after glibc's ``malloc_trim(0)`` in the worker, which separates what the worker
holds from what it freed but glibc kept resident (per-batch buffers).

    python -m bench.memory [--quick] [--json PATH]

``--quick`` (20,000 predictions over 200 models) finishes in well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import json
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson
import psutil
from redis.asyncio import Redis

from detectors.config import DetectorSettings, FeatureDriftConfig, SchemaChangeConfig
from detectors.features import FeatureWatch
from detectors.track import ModelTrack
from streams.contract.events import parse_predictions
from streams.dev.embedded import embedded_stack
from streams.dev.process import WorkerProcess
from streams.engine.join import Joiner
from streams.producer import WatchkeeperProducer
from streams.settings import Settings
from streams.store.health import HealthStore
from streams.topology import ensure_topics

from .report import Row, Suite, markdown

FULL = (1_000_000, 10_000)  # pending predictions, models
QUICK = (20_000, 200)
TARGET_B = 300
TTL_MS = 7 * 86_400_000
T0_MS = 1_795_255_200_000  # 2026-11-21T10:00:00Z, a fixed event-time origin
BATCH = 500  # events per message, as the producer helper batches them
BANK_OUTCOMES = 1_000  # outcomes per model for the "after outcomes" bank figure
BANK_MODELS_FED = 1_000  # models fed that many (10,000 would take minutes)


# --- traffic ----------------------------------------------------------------------------


def model_id(m: int) -> str:
    return f"model-{m:05d}"


def event(i: int, models: int) -> dict[str, Any]:
    """Prediction ``i``: round-robin over models, 3 ms apart in event time (1M span ~50
    minutes, far inside the 7-day TTL, so nothing expires)."""
    m = i % models
    return {
        "prediction_id": f"{model_id(m)}-{i // models:07d}",
        "model_id": model_id(m),
        "model_version": "1.0.0",
        "timestamp": T0_MS + 3 * i,
        "prediction": int(i * 7919 % 10 < 3),
        "score": round(i * 7919 % 10_000 / 10_000, 4),
        "segment": "eu",
    }


def messages(n: int, models: int) -> list[bytes]:
    """The predictions as JSON-array message values, as the producer helper sends them."""
    return [
        orjson.dumps([event(i, models) for i in range(start, min(start + BATCH, n))])
        for start in range(0, n, BATCH)
    ]


# --- in-process: one fresh interpreter per figure ----------------------------------------


def _feed_joiner(raws: list[bytes]) -> Joiner:
    joiner = Joiner({}, ttl_ms=TTL_MS)
    add = joiner.add_prediction
    for raw in raws:
        for p in parse_predictions(raw, record_timestamp_ms=0)[0]:
            add(p)
    return joiner


def _feed_previous(raws: list[bytes]) -> Any:
    """The join state as it was: ``("P", model, version, ts, prediction)`` per id and one
    ``(ts + ttl, id)`` heap tuple per write, plus the same per-model counters."""
    store: dict[str, tuple[Any, ...]] = {}
    expiry: list[tuple[int, str]] = []
    counts: Counter[str] = Counter()
    for raw in raws:
        for p in parse_predictions(raw, record_timestamp_ms=0)[0]:
            store[p.prediction_id] = (
                "P",
                p.model_id,
                p.model_version,
                p.timestamp_ms,
                p.prediction,
            )
            heapq.heappush(expiry, (p.timestamp_ms + TTL_MS, p.prediction_id))
            counts[p.model_id] += 1
    return store, expiry, counts


def _feed_raw(raws: list[bytes]) -> dict[str, bytes]:
    """Each event's JSON bytes under its prediction_id: the unparsed baseline.

    Copied to exact size: an ``orjson.dumps`` result keeps a 4 KiB allocation (orjson 3.13).
    """
    return {
        e["prediction_id"]: bytes(memoryview(orjson.dumps(e)))
        for raw in raws
        for e in orjson.loads(raw)
    }


def _changelog(raws: list[bytes]) -> list[tuple[bytes, bytes]]:
    """What the join's changelog holds for these predictions (key JSON, value pickled)."""
    joiner = _feed_joiner(raws)
    dumps = pickle.dumps
    return [
        (json.dumps(k).encode(), dumps(v, protocol=pickle.HIGHEST_PROTOCOL))
        for k, v in joiner.store.items()
    ]


def _restore(records: list[tuple[bytes, bytes]]) -> Joiner:
    """A restarted worker: keys and values read back one record at a time, then indexed."""
    data: dict[str, Any] = {json.loads(k): v for k, v in records}
    loads = pickle.loads
    for k in data:
        data[k] = loads(data[k])
    joiner = Joiner(data, ttl_ms=TTL_MS)
    joiner.rebuild_index()
    return joiner


FEEDERS: dict[str, Callable[[Any], Any]] = {
    "joiner": _feed_joiner,
    "previous": _feed_previous,
    "raw": _feed_raw,
    "restored": _restore,
}


def held_bytes(kind: str, n: int, models: int, traced: bool) -> dict[str, float]:
    """Bytes per prediction that ``kind`` holds: RSS growth, or traced bytes.

    The input (message bytes, or changelog records for ``restored``) exists before the
    baseline and stays alive to the end, so only what the state itself holds is counted.
    """
    raws = messages(n, models)
    source: Any = _changelog(raws) if kind == "restored" else raws
    gc.collect()
    proc = psutil.Process()
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else proc.memory_info().rss
    state = FEEDERS[kind](source)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if traced else proc.memory_info().rss
    tracemalloc.stop()
    out = {"bytes_per_prediction": (after - before) / n}
    if kind == "joiner" and not traced:
        out.update(_breakdown(state, n))
    del source
    return out


def _breakdown(joiner: Joiner, n: int) -> dict[str, float]:
    """Where a pending prediction's bytes go (sys.getsizeof, pymalloc rounds to 8)."""
    pid, entry = next(iter(joiner.store.items()))
    assert isinstance(entry, list)
    buckets = joiner._buckets  # noqa: SLF001 - measuring it is the point
    return {
        "key_str": sys.getsizeof(pid),
        "dict_slot": sys.getsizeof(joiner.store) / n,
        "entry_list": sys.getsizeof(entry),
        "timestamp_int": sys.getsizeof(entry[2]),
        "expiry_index": sum(map(sys.getsizeof, buckets.values())) / n,
        "model_strings_shared": float(entry[0] is sys.intern(entry[0])),
    }


def bank_bytes(models: int, fed: int, outcomes: int) -> dict[str, float]:
    """Traced bytes per ModelTrack (default detectors, 5-minute lag): ``models`` new ones,
    then ``fed`` of them after ``outcomes`` outcomes each, all released to the detectors."""
    config = DetectorSettings()
    lag_ms = Settings().reorder_lag_ms
    names = [model_id(m) for m in range(models)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracks = [ModelTrack(m, config.for_model(m), lag_ms=lag_ms) for m in names]
    gc.collect()
    new = (tracemalloc.get_traced_memory()[0] - before) / models
    tracemalloc.stop()
    rng = random.Random(11)
    errors = [float(rng.random() < 0.05) for _ in range(outcomes)]
    fed_tracks = tracks[:fed]
    del tracks
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for track in fed_tracks:
        for k, error in enumerate(errors):
            track.push(T0_MS + 1000 * k, f"{track.model_id}-{k:07d}", error, "1.0.0")
        track.flush()
    gc.collect()
    grown = (tracemalloc.get_traced_memory()[0] - before) / fed
    tracemalloc.stop()
    return {"new": new, "after_outcomes": new + grown}


FEATURE_EVENTS = 5_000  # events per model for the per-feature figures
FEATURES = 20  # features per model of each kind


def feature_bytes(events: int = FEATURE_EVENTS, features: int = FEATURES) -> dict[str, float]:
    """Bytes per watched feature of a :class:`~detectors.features.FeatureWatch` after
    ``events`` events (default settings): pickled, as the detector changelog holds it, and
    tracemalloc, for numbers, few-valued categories and ids (a vocabulary at its cap)."""
    rng = random.Random(13)
    makers: dict[str, Callable[[int], Any]] = {
        "number": lambda k: rng.gauss(50.0, 8.0),
        "category": lambda k: rng.choice(("nl", "de", "fr", "be", "es")),
        "id_like": lambda k: f"user-{rng.randrange(10**9)}",
    }
    out: dict[str, float] = {}
    empty = len(pickle.dumps(FeatureWatch(FeatureDriftConfig(), SchemaChangeConfig())))
    for kind, make in makers.items():
        rows = [
            (k + 1, T0_MS + 1000 * k, {f"{kind}_{f}": make(k) for f in range(features)})
            for k in range(events)
        ]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        watch = FeatureWatch(FeatureDriftConfig(), SchemaChangeConfig())
        for lo in range(0, events, 500):  # batches, as the detect step feeds them
            watch.feed(rows[lo : lo + 500])
        del rows
        gc.collect()
        out[f"{kind}_traced"] = (tracemalloc.get_traced_memory()[0] - before) / features
        tracemalloc.stop()
        out[f"{kind}_pickled"] = (len(pickle.dumps(watch)) - empty) / features
    return out


def in_fresh_process(fn: Callable[..., dict[str, float]], *args: Any) -> dict[str, float]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# --- the worker -------------------------------------------------------------------------


class WorkerDied(RuntimeError):
    pass


def _vm_hwm(pid: int) -> int:
    """Peak RSS of a process (Linux), 0 where unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def _settled_rss(proc: psutil.Process, worker: WorkerProcess) -> int:
    """RSS once it stops moving (under 1 MiB over one second, or 15 s at most)."""
    samples = [proc.memory_info().rss]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        _check(worker)
        samples.append(proc.memory_info().rss)
        if len(samples) >= 3 and abs(samples[-1] - samples[-3]) < 2**20:
            break
    return samples[-1]


def _check(worker: WorkerProcess) -> None:
    if not worker.alive():
        code = worker.proc.returncode if worker.proc else None
        raise WorkerDied(f"the worker exited ({code}); log tail:\n{worker.log_tail()}")


async def _wait_for(
    health: HealthStore, worker: WorkerProcess, counter: str, target: int, timeout: float
) -> float:
    """Poll the worker's Redis counters until ``counter`` reaches ``target``; seconds."""
    started = time.monotonic()
    last_report = started
    while True:
        _check(worker)
        done = (await health.totals()).get(counter, 0)
        now = time.monotonic()
        if done >= target:
            return now - started
        if now - started > timeout:
            raise TimeoutError(
                f"worker reached {counter}={done:,} of {target:,} in {timeout:.0f}s; "
                f"log tail:\n{worker.log_tail()}"
            )
        if now - last_report >= 15:
            last_report = now
            print(f"  ... {counter} {done:,}/{target:,}", file=sys.stderr, flush=True)
        await asyncio.sleep(0.25)


async def _produce(settings: Settings, events: Iterator[dict[str, Any]]) -> None:
    t = settings.topics
    async with WatchkeeperProducer(
        settings.bootstrap_servers,
        predictions_topic=t.predictions,
        ground_truth_topic=t.ground_truth,
        batch_size=BATCH,
        validate=False,
    ) as producer:
        for e in events:
            await producer.predict(
                e["prediction_id"],
                e["model_id"],
                e["prediction"],
                model_version=e["model_version"],
                timestamp=e["timestamp"],
                score=e["score"],
                segment=e["segment"],
            )


def _trimmed_rss(proc: psutil.Process) -> int | None:
    """RSS after ``malloc_trim(0)`` in the process (through gdb), None where gdb is missing
    or may not attach. What the trim releases is memory freed inside the process that
    glibc kept: retained, not held by any object."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return None
    try:
        done = subprocess.run(
            [gdb, "-p", str(proc.pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    return int(proc.memory_info().rss) if done.returncode == 0 else None


async def _drive(
    settings: Settings, worker: WorkerProcess, n: int, models: int
) -> dict[str, float]:
    assert worker.proc is not None
    proc = psutil.Process(worker.proc.pid)
    redis = Redis.from_url(settings.redis_url)
    health = HealthStore(redis, settings.redis_prefix)
    timeout = 300 + n / 1_000  # ~5-10k events/s today; fail loudly, not forever
    try:
        warm = ({**event(i, models), "prediction_id": f"warm-{i}"} for i in range(models))
        await _produce(settings, warm)
        await _wait_for(health, worker, "predictions", models, timeout=300)
        idle = await _settled_rss(proc, worker)
        idle_trimmed = await asyncio.to_thread(_trimmed_rss, proc)
        started = time.monotonic()
        await _produce(settings, (event(i, models) for i in range(n)))
        produced_s = time.monotonic() - started
        await _wait_for(health, worker, "predictions", models + n, timeout)
        processed_s = time.monotonic() - started
        full = await _settled_rss(proc, worker)
        peak = _vm_hwm(proc.pid)
        full_trimmed = await asyncio.to_thread(_trimmed_rss, proc)
        _check(worker)
        totals = await health.totals()
    finally:
        await redis.aclose()
    trimmed = (
        (full_trimmed - idle_trimmed) / n
        if full_trimmed is not None and idle_trimmed is not None
        else float("nan")
    )
    return {
        "rss_idle_mib": idle / 2**20,
        "rss_pending_mib": full / 2**20,
        "rss_peak_mib": peak / 2**20,
        "bytes_per_pending": (full - idle) / n,
        "peak_bytes_per_pending": (peak - idle) / n if peak else float("nan"),
        "trimmed_bytes_per_pending": trimmed,
        "produce_s": produced_s,
        "processed_s": processed_s,
        "events_per_s": n / processed_s,
        "predictions": float(totals.get("predictions", 0)),
        "dlq": float(totals.get("dlq", 0)),
    }


def worker_memory(n: int, models: int) -> dict[str, float]:
    """Start broker, Redis and a worker; measure; stop all three by pid, whatever happens."""
    with embedded_stack() as (broker, redis), tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            broker=broker.url,
            redis_url=redis.url,
            app_id="wk-memory",
            partitions=4,
            redis_prefix="mem:",
            data_dir=Path(tmp) / "data",
        )
        asyncio.run(ensure_topics(settings))
        worker = WorkerProcess(
            broker.url,
            redis.url,
            Path(tmp) / "worker.log",
            env={"WATCHKEEPER_REDIS_PREFIX": settings.redis_prefix},
            args=["--app-id", settings.app_id, "--data-dir", str(settings.data_dir)],
        ).start()
        try:
            return asyncio.run(_drive(settings, worker, n, models))
        finally:
            worker.stop()


# --- the suite --------------------------------------------------------------------------


def run(quick: bool = False) -> Suite:
    n, models = QUICK if quick else FULL
    figures: dict[str, dict[str, float]] = {}
    for kind in FEEDERS:
        for traced in (False, True):
            if kind == "restored" and not traced:
                continue  # its RSS would count the changelog's freed records being reused
            mode = "traced" if traced else "rss"
            figures[f"{kind}_{mode}"] = in_fresh_process(held_bytes, kind, n, models, traced)
    fed = min(models, BANK_MODELS_FED)
    bank = in_fresh_process(bank_bytes, models, fed, 200 if quick else BANK_OUTCOMES)
    feature = in_fresh_process(feature_bytes)
    worker = worker_memory(n, models)

    def per(key: str) -> float:
        return figures[key]["bytes_per_prediction"]

    def under(value: float) -> bool:
        return value < TARGET_B

    target = f"< {TARGET_B} B"
    trimmed = worker["trimmed_bytes_per_pending"]
    joiner_rss, joiner_traced = per("joiner_rss"), per("joiner_traced")
    suite = Suite(f"Memory: {n:,} pending predictions over {models:,} models")
    suite.rows = [
        Row("join state per pending prediction, in-process RSS", joiner_rss, "B",
            "previous representation, RSS", per("previous_rss"),
            joiner_rss / per("previous_rss"), target, under(joiner_rss)),
        Row("join state per pending prediction, in-process tracemalloc", joiner_traced, "B",
            "previous representation, tracemalloc", per("previous_traced"),
            joiner_traced / per("previous_traced"), target, under(joiner_traced)),
        Row("join state per pending prediction, in-process tracemalloc", joiner_traced, "B",
            "{prediction_id: raw JSON bytes}, tracemalloc", per("raw_traced"),
            joiner_traced / per("raw_traced")),
        Row("join state after a changelog restore, tracemalloc", per("restored_traced"), "B",
            "before the restore, tracemalloc", joiner_traced,
            per("restored_traced") / joiner_traced, target, under(per("restored_traced"))),
        Row("worker RSS per pending prediction", worker["bytes_per_pending"], "B",
            "in-process join state, RSS", joiner_rss,
            worker["bytes_per_pending"] / joiner_rss, target,
            None if quick else under(worker["bytes_per_pending"])),
        Row("detector bank per model, new (in-process tracemalloc)", bank["new"], "B"),
        Row(f"detector bank per model after {200 if quick else BANK_OUTCOMES:,} outcomes "
            f"({fed:,} models, tracemalloc)", bank["after_outcomes"], "B"),
        Row(f"feature watch per numeric feature after {FEATURE_EVENTS:,} events, pickled",
            feature["number_pickled"], "B"),
        Row(f"feature watch per categorical feature after {FEATURE_EVENTS:,} events, "
            "pickled (5 categories; id-like values: see notes)", feature["category_pickled"], "B"),
        Row("worker RSS per pending prediction, after malloc_trim", trimmed, "B",
            "worker RSS per pending prediction", worker["bytes_per_pending"],
            trimmed / worker["bytes_per_pending"]),
    ]  # fmt: skip
    suite.details = {
        "predictions": n,
        "models": models,
        "in_process": figures,
        "bank": bank,
        "feature_watch": feature,
        "worker": worker,
    }
    b = figures["joiner_rss"]
    suite.notes = [
        f"where a pending prediction's bytes go: id str {b['key_str']:.0f} (19-char ids; a "
        f"36-char UUID adds 16), dict slot {b['dict_slot']:.0f}, entry list "
        f"{b['entry_list']:.0f}, timestamp int {b['timestamp_int']:.0f}, expiry index "
        f"{b['expiry_index']:.1f}; model_id and model_version are interned, shared by all",
        "restored: values unpickled one by one, then rebuild_index, which swaps each "
        "entry's own model strings for the shared ones (pickle does not intern)",
        f"worker: warm-up of one prediction per model before the idle RSS; "
        f"{worker['events_per_s']:,.0f} predictions/s processed; peak RSS "
        f"{worker['rss_peak_mib']:,.0f} MiB vs idle {worker['rss_idle_mib']:,.0f} MiB",
        "after malloc_trim: idle and loaded RSS both read after glibc's malloc_trim(0), "
        "called in the worker through gdb; the difference to the plain figure is memory "
        "the worker freed (per-batch buffers) but glibc kept resident"
        + ("" if trimmed == trimmed else " (gdb missing or not allowed to attach here)"),
        f"feature watch per feature (detectors.features, {FEATURES} features of one kind "
        f"per model): id-like categories (every value new, the vocabulary at its cap of "
        f"200) {feature['id_like_pickled']:,.0f} B pickled; in memory (tracemalloc) numbers "
        f"{feature['number_traced']:,.0f} B, categories {feature['category_traced']:,.0f} B, "
        f"id-like {feature['id_like_traced']:,.0f} B",
        "the detector bank is measured in-process (tracemalloc of ModelTrack objects with "
        "the default detectors); a worker RSS delta over 10,000 new banks is smaller than "
        "the allocator noise around it",
    ]
    if quick:
        suite.notes.append(
            "quick run: too few predictions to amortise the worker's per-batch buffers "
            "(freed, but still resident), so its figure is not held to the target"
        )
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 predictions, 200 models")
    parser.add_argument("--json", type=Path, help="also write the suite here")
    args = parser.parse_args()
    suite = run(args.quick)
    if args.json:
        args.json.write_text(json.dumps(suite.as_dict(), indent=1) + "\n")
    print(markdown([suite.as_dict()]))


if __name__ == "__main__":
    main()
