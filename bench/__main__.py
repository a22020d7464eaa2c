"""Run the benchmark suites; write ``bench/results.json``, ``bench/results.md`` and the
table in README.md between its ``bench:start``/``bench:end`` markers.

    python -m bench                    # everything, full sizes (about 30 minutes here)
    python -m bench --quick            # tiny sizes, a minute or two: a smoke run
    python -m bench --only quality,detector_overhead

``--only`` replaces those suites' results and keeps the others'. A quick run writes
``results-quick.json`` and ``results-quick.md`` and leaves README alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .report import markdown

SUITES = (
    "quality",
    "quality_signals",
    "quality_versions",
    "quality_features",
    "detector_overhead",
    "decoding",
    "memory",
    "throughput",
    "scale",
    "scale_out",
    "flood",
    "latency",
)
HERE = Path(__file__).parent
README = HERE.parent / "README.md"
MARKERS = re.compile(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", re.S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SUITES)}")
    parser.add_argument("--out", type=Path, help="directory for results (default bench/)")
    args = parser.parse_args(argv)
    names = SUITES if not args.only else tuple(args.only.split(","))
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; choose from {list(SUITES)}")
    out = args.out or HERE
    suffix = "-quick" if args.quick else ""
    path = out / f"results{suffix}.json"
    kept = json.loads(path.read_text())["suites"] if args.only and path.exists() else []
    results = [s for s in kept if s.get("suite") in SUITES and s["suite"] not in names]
    for name in names:
        began = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        suite = importlib.import_module(f"bench.{name}").run(args.quick).as_dict()
        suite["suite"] = name
        suite["seconds"] = round(time.monotonic() - began, 1)
        results.append(suite)
        print(markdown([suite]), flush=True)
    doc = {
        "when": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "suites": results,
    }
    results.sort(key=lambda s: SUITES.index(s["suite"]))
    path.write_text(json.dumps(doc, indent=2) + "\n")
    table = markdown(results)
    (out / f"results{suffix}.md").write_text(table)
    if not args.quick and README.exists():
        text = README.read_text()
        if MARKERS.search(text):
            README.write_text(MARKERS.sub(lambda m: m[1] + table + "\n" + m[2], text))
    failed = [r["metric"] for s in results for r in s["rows"] if r["met"] is False]
    print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)
    if failed:
        print(f"targets not met: {failed}", file=sys.stderr)
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
