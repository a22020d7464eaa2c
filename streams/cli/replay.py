"""``watchkeeper replay``: flags to a backtest, then tables, files and (if asked) alerts."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from detectors.exceptions import DetectorSettingsError
from streams.cli.security import add_kafka_flags
from streams.connections import check_broker
from streams.errors import ConfigError
from streams.replay.backtest import expand_sweeps
from streams.settings import Settings

__all__ = ["add_replay_command", "run_replay"]


def add_replay_command(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-run the join and detectors over a time range of the topics (pages nobody)",
    )
    p.add_argument("--from", dest="start", help="RFC 3339 (2026-11-01T00:00Z) or epoch ms")
    p.add_argument("--to", dest="end", help="RFC 3339 or epoch ms (inclusive)")
    p.add_argument("--model", action="append", default=[], help="only these models")
    p.add_argument("--config", dest="detector_config", type=Path, help="detector TOML/YAML")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        help="KEY=V1,V2 (e.g. adwin.delta=0.002,0.0005); several --sweep give all combinations",
    )
    p.add_argument(
        "--expect",
        type=Path,
        help="CSV of known changes: model_id,change_at[,kind] (kind: performance_degradation "
        "by default, or a label-free kind such as labels_missing)",
    )
    p.add_argument("--out", type=Path, help="write results.json, CSVs and a PNG per model here")
    p.add_argument(
        "--publish",
        metavar="TOPIC",
        help="re-emit the replayed alerts (first combination) to this topic",
    )
    p.add_argument("--broker", help="kafka://host:port (env WATCHKEEPER_BROKER)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and CI)")
    add_kafka_flags(p)


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    from streams.replay.report import (
        evaluate,
        load_expected,
        model_table,
        sweep_table,
        write_outputs,
    )
    from streams.replay.source import parse_time, publish_alerts, replay
    from streams.settings import load_detectors

    console = Console()
    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    if start is not None and end is not None and end < start:
        raise ConfigError("--to is before --from")
    try:
        combinations = expand_sweeps(load_detectors(settings), args.sweep)
    except (ValueError, DetectorSettingsError) as exc:
        raise ConfigError(str(exc)) from exc
    try:
        expected = load_expected(args.expect) if args.expect else []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--expect {args.expect}: {exc}") from exc
    models = set(args.model) or None
    if args.out:  # before the replay, not after minutes of it
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--out {args.out}: cannot write there: {exc.strerror or exc}"
            ) from None
    asyncio.run(check_broker(settings.bootstrap_servers, settings.kafka))

    with Progress(
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.completed:,} messages"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.no_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=None, rate="")
        messages = [0]  # Kafka records read: a message may hold many events

        def advance(read: int, expected_records: int) -> None:
            messages[0] = read
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{read / elapsed:,.0f} msg/s" if elapsed > 0 else ""
            bar.update(task, completed=read, total=expected_records, rate=rate)

        result = asyncio.run(
            replay(
                settings, combinations, start_ms=start, end_ms=end, models=models, progress=advance
            )
        )
    rate = result.events / result.elapsed_s if result.elapsed_s else 0.0
    console.print(
        f"replayed {result.events:,} events in {messages[0]:,} Kafka messages, of "
        f"{len(result.models)} models, in {result.elapsed_s:.1f}s ({rate:,.0f} events/s); "
        f"{result.dead_letters} invalid, {result.late_outcomes} outcomes out of event-time order"
    )
    if result.events == 0 and (start is not None or end is not None):
        console.print(
            "nothing in that range: --from and --to select by Kafka record time (when the "
            "events were published), not by the events' own timestamps"
        )
    scores = evaluate(result, expected)
    console.print(model_table(result, combinations[0].name))
    if len(combinations) > 1 or expected:
        console.print(sweep_table(result, scores))
    if args.out:
        try:
            written = write_outputs(result, scores, args.out)
        except OSError as exc:
            raise ConfigError(
                f"--out {args.out}: cannot write there: {exc.strerror or exc}"
            ) from None
        for path in written:
            console.print(f"wrote {path}")
    if args.publish:
        alerts = result.alerts[combinations[0].name]
        sent = asyncio.run(
            publish_alerts(settings.bootstrap_servers, args.publish, alerts, kafka=settings.kafka)
        )
        console.print(f"published {sent} alerts to {args.publish} ({combinations[0].name})")
    return 0
