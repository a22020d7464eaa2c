"""How throughput and memory change with the number of models (batched input).

The same number of pairs, spread over 10, 1,000 and 10,000 models, each run against the
plain aiokafka read of its own topics in the same run. Memory is the worker's resident
set once every outcome went through, against its size when idle after startup.

    python -m bench.scale [--quick] [--pairs N] [--models 10,1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio

from .harness import Traffic, plain_read, produce, run_worker, stack
from .report import Row, Suite, markdown

PAIRS = 1_000_000
MODELS = (10, 1_000, 10_000)


def run(
    quick: bool = False, *, pairs: int | None = None, models: tuple[int, ...] = MODELS
) -> Suite:
    pairs = pairs or (5_000 if quick else PAIRS)
    suite = Suite(f"Scale with models: {pairs:,} pairs, batched, one worker process")
    with stack() as s:
        for n in models:
            settings = s.settings(f"scale-{n}")
            traffic = Traffic(pairs, n, seed=7)
            asyncio.run(produce(settings, traffic, "batched"))
            base = pairs / asyncio.run(plain_read(settings, 2 * pairs))
            run = run_worker(settings, pairs, timeout=1800)
            grown = (run.rss_end - run.rss_idle) / 2**20
            suite.rows.append(
                Row(
                    f"{n:,} models",
                    run.pairs_per_s,
                    "pairs/s",
                    "plain aiokafka read + orjson",
                    base,
                    run.pairs_per_s / base,
                )
            )
            suite.details[str(n)] = {
                "worker_pairs_per_s": run.pairs_per_s,
                "aiokafka_pairs_per_s": base,
                "worker_rss_idle_mib": run.rss_idle / 2**20,
                "worker_rss_end_mib": run.rss_end / 2**20,
                "worker_rss_growth_mib": grown,
            }
    growth = ", ".join(
        f"{n:,} models +{suite.details[str(n)]['worker_rss_growth_mib']:.0f} MiB" for n in models
    )
    suite.notes.append(f"worker resident memory growth over the run: {growth}")
    return suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--models", default=",".join(str(m) for m in MODELS))
    args = parser.parse_args()
    models = tuple(int(m) for m in args.models.split(","))
    print(markdown([run(args.quick, pairs=args.pairs, models=models).as_dict()]))


if __name__ == "__main__":
    main()
