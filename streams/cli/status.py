"""``watchkeeper status [--json]``: every model, worst first, from Redis alone (the
workers' health snapshots, the owner registry and the notifier's records; no broker).

The order and the states are :mod:`streams.views.fleet`'s. The table is for people;
``--json`` prints :meth:`~streams.views.fleet.ModelStatus.to_json` of each model, in the
same order, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from streams.contract.alerts import FLEET
from streams.settings import Settings
from streams.store.session import redis_session
from streams.views.fleet import ModelStatus, fleet_status

__all__ = [
    "add_status_command",
    "age_text",
    "console",
    "percent",
    "run_status",
    "sparkline",
    "status_row",
    "utc_text",
]

ORDER_HELP = """\
Models are listed worst first:
  critical  an open critical incident, then a model nobody owns (an orphan)
  warning   an open incident of lower severity, or a model that stopped serving
  ok        seen in traffic, nothing open
  unknown   in the owner registry only (never seen, or its health keys expired)
and within each, more open incidents first, then by model id.

LAST PREDICTION is event time (the events' own clock), shown as its age and in UTC;
ERROR is the detectors' recent window (last 100 outcomes) against the mean over every
outcome seen; TREND is the error rate per hour of prediction time (the last 8 hours).
OPEN lists the incidents the notifier has open (kind and severity)."""

STATE_STYLES = {"critical": "bold red", "warning": "yellow", "ok": "green", "unknown": "dim"}
STATE_LABELS = {"critical": "CRIT", "warning": "WARN", "ok": "ok", "unknown": "?"}
_BARS = "▁▂▃▄▅▆▇█"
_UNITS = ((86_400, "d"), (3600, "h"), (60, "m"), (1, "s"))


def add_status_command(sub: Any, connection_flags: Callable[..., None]) -> None:
    """Add ``status``; ``connection_flags`` adds the --redis style flags (main.py's)."""
    status = sub.add_parser(
        "status",
        help="every model worst first: owner, last prediction, labels, error, open alerts",
        description="Every model the workers have seen or the owner registry lists, from "
        "Redis: owner, last prediction, label coverage, error now against its baseline, "
        "open incidents and orphans.",
        epilog=ORDER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "--json", action="store_true", help="print a JSON list of models (same order)"
    )
    connection_flags(status)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_status(args, settings))


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    now_ms = int(time.time() * 1000)
    async with redis_session(settings) as redis:
        models = await fleet_status(redis, settings, now_ms=now_ms)
        notified = bool(await redis.exists(f"{settings.redis_prefix}notify:stats"))
    if models and not notified:
        print(
            "note: the notifier has recorded nothing under this Redis prefix, so no incident "
            "shows as open (is `watchkeeper notify` running?)",
            file=sys.stderr,
        )
    if args.json:
        sys.stdout.write(
            orjson.dumps([m.to_json() for m in models], option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        return 0
    if not models:
        print(
            f"no models seen yet; is a worker running against this Redis prefix "
            f"({settings.redis_prefix})?"
        )
        return 0
    out = console()
    out.print(summary_line(models, now_ms), highlight=False)
    out.print(status_table(models, now_ms))
    return 0


def console() -> Console:
    """Rich output on stdout; wide enough not to fold rows when piped to a file."""
    terminal = sys.stdout.isatty()
    return Console(width=None if terminal else 200, highlight=False, soft_wrap=False)


def summary_line(models: Sequence[ModelStatus], now_ms: int) -> str:
    counts = {s: sum(1 for m in models if m.state == s) for s in STATE_LABELS}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    orphans = sum(1 for m in models if m.orphan)
    if orphans:
        parts.append(f"{orphans} without an owner")
    return f"{len(models)} models at {utc_text(now_ms)}: " + ", ".join(parts)


def status_table(models: Sequence[ModelStatus], now_ms: int) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in (
        "STATE",
        "MODEL",
        "OWNER",
        "LAST PREDICTION",
        "LABELS",
        "ERROR NOW / BASELINE",
        "TREND",
        "OPEN",
    ):
        table.add_column(name, no_wrap=name != "OPEN")
    for m in models:
        cells = [Text(c) for c in status_row(m, now_ms)]
        cells[0].stylize(STATE_STYLES.get(m.state, ""))
        if m.orphan:
            cells[2].stylize("bold red")
        table.add_row(*cells)
    return table


def status_row(m: ModelStatus, now_ms: int) -> tuple[str, ...]:
    """One model as table cells (plain text: ids are never read as markup)."""
    owner = m.owner or ("ORPHAN: no owner" if m.orphan else "-")
    if m.last_prediction_ms is None:
        last = "-"
    else:
        last = f"{age_text(m.last_prediction_ms, now_ms)} ({utc_text(m.last_prediction_ms)})"
    if m.error_rate is None and m.baseline_error_rate is None:
        error = "-"
    else:
        error = f"{percent(m.error_rate)} / {percent(m.baseline_error_rate)}"
    opened = [
        f"{kind} ({severity})"
        for kind, severity in zip(m.open_alerts, m.open_severities, strict=False)
    ] or list(m.open_alerts)
    if m.silent and "model_silent" not in m.open_alerts:
        opened.append("not serving")
    if m.silenced_until_ms is not None:
        opened.append(f"silenced until {utc_text(m.silenced_until_ms)}")
    return (
        STATE_LABELS.get(m.state, m.state),
        f"{FLEET} (every model)" if m.model_id == FLEET else m.model_id,
        owner,
        last,
        percent(m.label_coverage),
        error,
        sparkline(m.trend),
        ", ".join(opened) or "-",
    )


def age_text(at_ms: int, now_ms: int) -> str:
    """How long ago, in its largest two units: ``3h12m ago``, ``14d2h ago``; ``in 5m`` for
    a time ahead of this clock (a skewed producer's event time, or simulated traffic)."""
    seconds = abs(now_ms - at_ms) // 1000
    text = "0s"
    for i, (size, name) in enumerate(_UNITS):
        if seconds >= size:
            big, rest = divmod(seconds, size)
            text = f"{big}{name}"
            if i + 1 < len(_UNITS) and (small := rest // _UNITS[i + 1][0]):
                text += f"{small}{_UNITS[i + 1][1]}"
            break
    return f"in {text}" if at_ms > now_ms else f"{text} ago"


def utc_text(at_ms: int) -> str:
    """``2026-11-19 14:05Z``: minutes are what people compare across time zones."""
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%MZ")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def sparkline(values: Sequence[float]) -> str:
    """Bars scaled from 0 to the largest value (a flat 0 line stays at the bottom)."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(
        _BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1) + 0.5))] for v in values
    )
