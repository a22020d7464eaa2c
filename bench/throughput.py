"""Throughput of a running worker against baselines and peers read from the same topics.

For each message form (one event per message, and the producer helper's JSON arrays) the
same pairs are published once, before anything reads them, and then read by:
a plain aiokafka consumer and a plain confluent-kafka consumer that only orjson-decode;
the replay engine (the same join and detectors in process, writing nothing: what the
worker's own code costs without Faust, changelogs or the outcomes topic); a bare default
Faust agent that only counts; a quix-streams application doing the worker's job
(``bench/quix_app.py``: the join in its state store, river ADWIN and Page-Hinkley per
model); and a Watchkeeper worker, timed from its first to its last outcome.

    python -m bench.throughput [--quick] [--pairs N] [--models N] [--forms single,batched]

The quix-streams peer needs the bench extra (``pip install -e '.[bench]'``); without it
its rows are left out and a note says so.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json

from streams.settings import Settings

from .harness import (
    Stack,
    Traffic,
    faust_count,
    plain_read,
    produce,
    replay_read,
    run_worker,
    stack,
)
from .peers import confluent_read, create_quix_topics, quix_run
from .report import Row, Suite, markdown

PAIRS, MODELS = 400_000, 100  # the side-by-side size
QUIX = importlib.util.find_spec("quixstreams") is not None
OFF = {"WATCHKEEPER_LABEL_FREE": "false"}


def _label_free_off(settings: Settings) -> Settings:
    """A second worker on the same input topics, with internal topics, group and Redis
    keys of its own, and the label-free signals off: what they cost."""
    t = settings.topics
    topics = t.model_copy(
        update={name: f"{getattr(t, name)}-off" for name in ("outcomes", "alerts", "dlq", "rekey")}
    )
    return settings.model_copy(
        update={
            "app_id": f"{settings.app_id}-off",
            "redis_prefix": f"{settings.redis_prefix}off:",
            "data_dir": settings.data_dir.with_name(f"{settings.data_dir.name}-off"),
            "topics": topics,
        }
    )


def measure_form(
    s: Stack,
    form: str,
    traffic: Traffic,
    *,
    with_faust: bool,
    timeout: float,
    with_quix: bool = False,
) -> tuple[list[Row], dict[str, float]]:
    settings = s.settings(f"tp-{form}-{traffic.models}")
    asyncio.run(create_quix_topics(settings))  # with the configs quix-streams reads back
    messages = asyncio.run(produce(settings, traffic, form))
    read_s = asyncio.run(plain_read(settings, 2 * traffic.pairs))
    aiokafka_pairs_s = traffic.pairs / read_s
    confluent_pairs_s = traffic.pairs / asyncio.run(confluent_read(settings, 2 * traffic.pairs))
    replay_pairs_s = asyncio.run(replay_read(settings, traffic.pairs))
    run = run_worker(settings, traffic.pairs, timeout=timeout)
    off = run_worker(_label_free_off(settings), traffic.pairs, timeout=timeout, env=OFF)
    label = "one event per message" if form == "single" else "batched (producer helper)"
    rows = [
        Row(
            f"worker, {label}",
            run.pairs_per_s,
            "pairs/s",
            "plain aiokafka read + orjson",
            aiokafka_pairs_s,
            run.pairs_per_s / aiokafka_pairs_s,
            ">= 100,000 pairs/s" if form == "batched" else "",
            run.pairs_per_s >= 100_000 if form == "batched" else None,
        ),
        Row(
            f"worker, {label}",
            run.pairs_per_s,
            "pairs/s",
            "plain confluent-kafka read + orjson",
            confluent_pairs_s,
            run.pairs_per_s / confluent_pairs_s,
        ),
        Row(
            f"replay engine, {label}",
            replay_pairs_s,
            "pairs/s",
            "plain aiokafka read + orjson",
            aiokafka_pairs_s,
            replay_pairs_s / aiokafka_pairs_s,
            ">= 0.3 of aiokafka",
            replay_pairs_s / aiokafka_pairs_s >= 0.3,
        ),
        Row(
            f"worker, {label}",
            run.pairs_per_s,
            "pairs/s",
            "replay engine (same code in process, writes nothing)",
            replay_pairs_s,
            run.pairs_per_s / replay_pairs_s,
        ),
        Row(
            f"worker, {label}",
            run.pairs_per_s,
            "pairs/s",
            "the same worker with the label-free signals off",
            off.pairs_per_s,
            run.pairs_per_s / off.pairs_per_s,
        ),
    ]
    details = {
        "messages": float(messages),
        "pairs": float(traffic.pairs),
        "models": float(traffic.models),
        "worker_pairs_per_s": run.pairs_per_s,
        "worker_label_free_off_pairs_per_s": off.pairs_per_s,
        "worker_seconds": run.seconds,
        "aiokafka_pairs_per_s": aiokafka_pairs_s,
        "confluent_pairs_per_s": confluent_pairs_s,
        "replay_pairs_per_s": replay_pairs_s,
        "worker_rss_idle_mib": run.rss_idle / 2**20,
        "worker_rss_end_mib": run.rss_end / 2**20,
    }
    if with_faust:
        counted, faust_s = faust_count(settings, messages, timeout=timeout)
        faust_pairs_s = traffic.pairs / faust_s
        details["faust_pairs_per_s"] = faust_pairs_s
        details["faust_messages_per_s"] = counted / faust_s
        target = ">= 3x bare Faust" if form == "single" else ""
        rows.append(
            Row(
                f"worker, {label}",
                run.pairs_per_s,
                "pairs/s",
                "bare default Faust agent, counting",
                faust_pairs_s,
                run.pairs_per_s / faust_pairs_s,
                target,
                run.pairs_per_s / faust_pairs_s >= 3 if form == "single" else None,
            )
        )
    if with_quix:
        quix = quix_run(settings, traffic.pairs, timeout=timeout)
        details |= {
            "quix_pairs_per_s": quix.pairs_per_s,
            "quix_join_only_pairs_per_s": quix.pairs / quix.join_seconds,
            "quix_out_of_order": float(quix.out_of_order),
            "quix_detections": float(quix.detections),
        }
        rows.append(
            Row(
                f"worker, {label}",
                run.pairs_per_s,
                "pairs/s",
                "quix-streams app, same join and detectors",
                quix.pairs_per_s,
                run.pairs_per_s / quix.pairs_per_s,
                ">= 2.5x quix-streams" if form == "single" else "",
                run.pairs_per_s / quix.pairs_per_s >= 2.5 if form == "single" else None,
            )
        )
    return rows, details


def run(
    quick: bool = False,
    *,
    pairs: int | None = None,
    models: int | None = None,
    forms: tuple[str, ...] = ("single", "batched"),
    faust: bool = True,
    quix: bool = True,
) -> Suite:
    pairs = pairs or (5_000 if quick else PAIRS)
    models = models or (10 if quick else MODELS)
    suite = Suite(f"Throughput: {pairs:,} pairs, {models} models, one worker process")
    with stack() as s:
        for form in forms:
            rows, details = measure_form(
                s,
                form,
                Traffic(pairs, models),
                with_faust=faust and not quick,
                with_quix=quix and QUIX and not quick,
                timeout=1800,
            )
            suite.rows += rows
            suite.details[form] = details
    if quick:
        suite.notes.append(
            "quick run: the bare Faust and quix-streams peers (30 s+ group joins) are skipped"
        )
    elif quix and not QUIX:
        suite.notes.append("quix-streams is not installed (pip install -e '.[bench]'): no peer")
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--models", type=int)
    parser.add_argument("--forms", default="single,batched")
    parser.add_argument("--no-faust", action="store_true", help="skip the bare Faust baseline")
    parser.add_argument("--no-quix", action="store_true", help="skip the quix-streams peer")
    args = parser.parse_args()
    suite = run(
        args.quick,
        pairs=args.pairs,
        models=args.models,
        forms=tuple(args.forms.split(",")),
        faust=not args.no_faust,
        quix=not args.no_quix,
    )
    print(markdown([suite.as_dict()]))
    print(json.dumps(suite.details, indent=1))


if __name__ == "__main__":
    main()
