"""``watchkeeper alerts list | show``: the alert history, like Alertmanager's amtool.

Alerts come from the alerts topic, read from its beginning (the record of every alert),
joined with the notifier's records in Redis: paged or why not, acknowledged by whom and
when, silenced, incident open (:mod:`streams.views.history`). ``--since`` goes by the
alert's ``detected_at`` (when a worker raised it), not by its event time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from rich.table import Table
from rich.text import Text

from streams.cli.status import STATE_STYLES, age_text, console, utc_text
from streams.contract.alerts import rfc3339_ms
from streams.settings import Settings
from streams.store.session import redis_session
from streams.views.history import (
    PAGE_STATES,
    AlertEntry,
    find_alert,
    join_paging,
    parse_since,
    read_alerts,
    select,
)

__all__ = ["add_alerts_command", "list_row", "paging_text", "run_alerts", "show_lines"]

ID_CHARS = 12  # as the demo prints ids; `show` and `ack` take any unique prefix
MESSAGE_CHARS = 72  # of a message in the list (`show` prints it whole)
SEVERITY_STYLES = {"critical": STATE_STYLES["critical"], "warning": STATE_STYLES["warning"]}

LIST_HELP = """\
Newest first, by the time a worker detected each alert (its detected_at).
PAGING says what the notifier did: paged, acked by NAME, or why it did not page
(silenced, acknowledged, cooldown, held back, dead-lettered, summarised, info), or
no record (the notifier has not handled it, or its records expired after
WATCHKEEPER_NOTIFY_DEDUP_TTL_S). OPEN marks alerts whose model and kind have an
incident open now."""


def add_alerts_command(sub: Any, connection_flags: Callable[..., None]) -> None:
    """Add ``alerts list`` and ``alerts show``; ``connection_flags`` adds --broker/--redis."""
    alerts = sub.add_parser(
        "alerts",
        help="alert history from the alerts topic, with paging state (like amtool)",
        description="Every alert on the alerts topic, joined with what the notifier did.",
    )
    actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="alerts newest first, filtered by model, kind and time",
        epilog=LIST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--model", metavar="MODEL", help="only this model's alerts")
    listing.add_argument(
        "--kind", metavar="KIND", help="only this kind, e.g. performance_degradation"
    )
    listing.add_argument(
        "--since",
        metavar="WHEN",
        help="only alerts detected since: a duration back from now (7d, 12h, 30m) or a time "
        "(2026-11-19T00:00Z, epoch ms)",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list (newest first)")
    connection_flags(listing, broker=True)
    show = actions.add_parser(
        "show", help="one alert in full, with its paging state: paged, acked, silenced, open"
    )
    show.add_argument("alert_id", metavar="ID", help="the alert id, or its first characters")
    show.add_argument("--json", action="store_true", help="print JSON")
    connection_flags(show, broker=True)


def run_alerts(args: argparse.Namespace, settings: Settings) -> int:
    # a broker that cannot be reached is reported in one line, not also by aiokafka's log
    # (printed by logging's last-resort handler when nothing is configured)
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    if args.alerts_command == "show":
        return asyncio.run(_show(args, settings))
    return asyncio.run(_list(args, settings))


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    now_ms = int(time.time() * 1000)
    since_ms = None if args.since is None else parse_since(args.since, now_ms)
    async with redis_session(settings) as redis:  # first: fails fast, before a long read
        log = await read_alerts(settings)
        chosen = select(log.alerts, model=args.model, kind=args.kind, since_ms=since_ms)
        entries = await join_paging(redis, settings, chosen, now_ms=now_ms)
    if log.invalid:
        print(
            f"watchkeeper: {log.invalid} record(s) on {log.topic} are not alerts (skipped)",
            file=sys.stderr,
        )
    if args.json:
        _print_json([e.to_json() for e in entries])
        return 0
    if not entries:
        print(_nothing(log.topic, len(log.alerts), args))
        return 0
    out = console()
    out.print(f"{len(entries)} alerts on {log.topic}, newest first", highlight=False)
    out.print(alerts_table(entries, now_ms))
    return 0


def _nothing(topic: str, total: int, args: argparse.Namespace) -> str:
    if not total:
        return f"no alerts on {topic} yet"
    filters = [
        f"{name} {value}"
        for name, value in (("model", args.model), ("kind", args.kind), ("since", args.since))
        if value is not None
    ]
    return f"no alerts match ({', '.join(filters)}) among the {total} on {topic}"


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    now_ms = int(time.time() * 1000)
    async with redis_session(settings) as redis:
        entry = await find_alert(settings, redis, args.alert_id)
    if args.json:
        _print_json(entry.to_json())
        return 0
    lines = show_lines(entry, now_ms)
    width = max(len(name) for name, _ in lines) + 1
    for name, value in lines:
        print(f"{name + ':':<{width}} {value}")
    return 0


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def alerts_table(entries: Sequence[AlertEntry], now_ms: int) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("DETECTED", "ID", "MODEL", "KIND", "SEVERITY", "CHANGE", "PAGING", "OPEN"):
        table.add_column(name, no_wrap=name not in ("CHANGE", "PAGING"))
    for entry in entries:
        cells = [Text(c) for c in list_row(entry, now_ms)]
        cells[4].stylize(SEVERITY_STYLES.get(str(entry.alert.get("severity")), ""))
        table.add_row(*cells)
    return table


def list_row(entry: AlertEntry, now_ms: int) -> tuple[str, ...]:
    """One alert as table cells (plain text)."""
    a = entry.alert
    at = entry.detected_at_ms
    detected = "-" if at is None else f"{utc_text(at)} ({age_text(at, now_ms)})"
    kind = str(a["kind"]) + (" (resolved)" if a.get("status") == "resolved" else "")
    return (
        detected,
        entry.alert_id[:ID_CHARS],
        str(a["model_id"]),
        kind,
        str(a.get("severity", "")),
        change_text(a),
        paging_text(entry),
        "open" if entry.incident_open else "-",
    )


def change_text(alert: dict[str, Any], most: int = MESSAGE_CHARS) -> str:
    """The alert's message (label-free signals have one), cut to ``most`` characters,
    else the error rate before -> after (performance alerts)."""
    message = alert.get("message")
    if isinstance(message, str) and message:
        return message if len(message) <= most else message[: most - 1] + "…"
    before, after = alert.get("before"), alert.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        b, f = before.get("error_rate"), after.get("error_rate")
        if isinstance(b, int | float) and isinstance(f, int | float):
            return f"error {b * 100:.1f}% -> {f * 100:.1f}%"
    return "-"


def paging_text(entry: AlertEntry) -> str:
    """Short: ``paged, acked by alice``; ``silenced``; ``no record``."""
    parts = [entry.page_state.replace("_", " ")]
    if entry.escalated:
        parts.append("escalated")
    if entry.acked_by is not None:
        parts.append(f"acked by {entry.acked_by}")
    if entry.silenced and entry.page_state != "silenced":
        parts.append("model silenced now")
    return ", ".join(parts)


_SHOWN_FIRST = (
    "alert_id",
    "model_id",
    "model_version",
    "kind",
    "status",
    "severity",
    "detector",
    "signal",
    "direction",
    "event_time",
    "detected_at",
    "before",
    "after",
    "message",
    "owner",
    "runbook",
)


def show_lines(entry: AlertEntry, now_ms: int) -> list[tuple[str, str]]:
    """The whole alert (every field: the usual ones first, then the rest as JSON) and its
    paging state, as (name, value) lines."""
    a = entry.alert
    lines: list[tuple[str, str]] = []
    for name in _SHOWN_FIRST:
        if name in a:
            lines.append((name, _value(a[name])))
    for name, value in a.items():
        if name not in _SHOWN_FIRST:
            lines.append((name, _value(value)))
    if entry.detected_at_ms is not None:
        lines.append(("age", age_text(entry.detected_at_ms, now_ms)))
    paged = "no"
    if entry.paged and entry.paged_at_ms is not None:
        paged = f"yes, at {_stamp(entry.paged_at_ms)} ({age_text(entry.paged_at_ms, now_ms)})"
    elif entry.paged:
        paged = "yes"
    lines.append(("paged", paged))
    meaning = PAGE_STATES.get(entry.page_state)
    lines.append(("page state", entry.page_state + (f" ({meaning})" if meaning else "")))
    lines.append(("escalated", "yes" if entry.escalated else "no"))
    acked = "no"
    if entry.acked_by is not None:
        acked = f"by {entry.acked_by}"
        if entry.acked_at_ms is not None:
            acked += f" at {_stamp(entry.acked_at_ms)} ({age_text(entry.acked_at_ms, now_ms)})"
    lines.append(("acknowledged", acked))
    silenced = "no"
    if entry.silenced_until_ms is not None:
        silenced = f"yes, its model until {_stamp(entry.silenced_until_ms)}"
    elif entry.silenced:
        silenced = "yes"
    lines.append(("silenced", silenced))
    kind = "performance_degradation" if a["kind"] == "performance_improvement" else a["kind"]
    state = "open" if entry.incident_open else "none open"
    lines.append(("incident", f"{state} for {a['model_id']} {kind}"))
    return lines


def _value(value: Any) -> str:
    """A field's value in one line: ``before``/``after`` as ``key=value`` pairs."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        return "  ".join(f"{k}={_value(v)}" for k, v in value.items())
    return orjson.dumps(value).decode()


def _stamp(at_ms: int) -> str:
    """RFC 3339 to the second, as alerts write times."""
    return rfc3339_ms(at_ms - at_ms % 1000).replace(".000Z", "Z")
