"""``watchkeeper report [--since 7d] [--owner X] [--format md|json|html] [--out FILE]``:
the maintenance scorecard (:mod:`streams.views.report`), per owner and per model, nobody's
models first. Markdown on stdout by default; ``--format html`` is the UI's ``/report``
page as one file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from streams.errors import ConfigError
from streams.settings import Settings
from streams.store.session import redis_session
from streams.views.history import parse_since
from streams.views.report import Report, read_report
from streams.views.report_text import to_markdown

__all__ = ["FORMATS", "add_report_command", "render", "run_report"]

FORMATS = ("md", "json", "html")
REPORT_HELP = """\
Per owner, a totals line and a row per model; models nobody owns come first.
Incidents: one per model and kind paged in the window or open now (open / resolved).
Time to ack: acked_at - detected_at of the paged alerts acknowledged (median).
Versions shipped: the model_version values seen in the window.
Watched by: the registered owner (since when) and who acknowledged pages (when)."""


def add_report_command(sub: Any, connection_flags: Callable[..., None]) -> None:
    """Add ``report``; ``connection_flags`` adds --broker/--redis (main.py's)."""
    report = sub.add_parser(
        "report",
        help="maintenance scorecard per owner: incidents, time to ack, error, coverage, "
        "versions, overdue, orphans",
        description="Who was watching each model, and how well: incidents, time to "
        "acknowledge, error against baseline, label coverage, versions shipped and overdue "
        "maintenance, per owner; orphans first.",
        epilog=REPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "--since",
        metavar="WHEN",
        default="7d",
        help="the window: a duration back from now (7d, 12h) or a time (2026-11-19T00:00Z); "
        "default 7d",
    )
    report.add_argument("--owner", metavar="NAME", help="only this owner's scorecard")
    report.add_argument(
        "--format", choices=FORMATS, default="md", help="md (default), json or html"
    )
    report.add_argument("--out", type=Path, metavar="FILE", help="write to FILE, not stdout")
    connection_flags(report, broker=True)


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    now_ms = int(time.time() * 1000)
    since_ms = parse_since(args.since, now_ms)
    if since_ms > now_ms:
        raise ConfigError(f"--since {args.since!r} is in the future")
    report = asyncio.run(_read(settings, since_ms, now_ms))
    if args.owner is not None:
        report = report.for_owner(args.owner)
    text = render(report, args.format)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote the scorecard to {args.out}", file=sys.stderr)
    return 0


async def _read(settings: Settings, since_ms: int, now_ms: int) -> Report:
    async with redis_session(settings) as redis:
        return await read_report(redis, settings, since_ms=since_ms, now_ms=now_ms)


def render(report: Report, fmt: str) -> str:
    """The report as ``md``, ``json`` or ``html`` text."""
    if fmt == "json":
        return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "html":
        from streams.ui.pages import report_page

        return report_page(report, now_ms=report.now_ms)
    return to_markdown(report)
