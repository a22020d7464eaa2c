"""``watchkeeper notify | ack | silence | unsilence``: the notifier and what on-call people
type to quiet it. ``ack`` and ``silence`` write the same Redis keys the notifier reads, so
they take effect on every replica at once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from streams.errors import ConfigError
from streams.redact import RedactingFilter
from streams.settings import Settings
from streams.store.owners import parse_duration
from streams.store.paging import PagingStore
from streams.store.session import redis_session

__all__ = ["add_notify_commands", "run_notify_command"]


def add_notify_commands(sub: Any, redis_flags: Any) -> None:
    """Add the notifier's subcommands; ``redis_flags`` adds --broker/--redis style flags
    (and --metrics-port with ``metrics=True``)."""
    notify = sub.add_parser("notify", help="deliver alerts to model owners (own consumer group)")
    redis_flags(notify, broker=True, metrics=True)
    ack = sub.add_parser("ack", help="acknowledge an alert: no escalation, no repeats for a while")
    ack.add_argument("alert_id", help="the alert id, or its first characters if unique")
    ack.add_argument("--by", default="cli", help="who acknowledges (shown in the record)")
    redis_flags(ack)
    silence = sub.add_parser("silence", help="silence a model's pages for a while")
    silence.add_argument("model", nargs="?", help="model id (omit with --list)")
    silence.add_argument("--for", dest="duration", help="how long, e.g. 30m, 2h, 1d")
    silence.add_argument("--reason", default="", help="why (shown in the record)")
    silence.add_argument("--by", default="cli", help="who silences (shown in the record)")
    silence.add_argument("--list", action="store_true", help="show silences in force")
    redis_flags(silence)
    unsilence = sub.add_parser("unsilence", help="lift a model's silence")
    unsilence.add_argument("model")
    redis_flags(unsilence)


def run_notify_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "notify":
        from streams.notify.loop import run_notifier

        level = {"crit": "CRITICAL", "warn": "WARNING"}.get(settings.log_level, settings.log_level)
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        for handler in logging.getLogger().handlers:  # library logs too (aiohttp quotes URLs)
            handler.addFilter(RedactingFilter())
        asyncio.run(run_notifier(settings))
        return 0
    return asyncio.run(_paging_command(args, settings))


async def _paging_command(args: argparse.Namespace, settings: Settings) -> int:
    async with redis_session(settings) as redis:
        store = PagingStore(
            redis, settings.redis_prefix, clock=time.time, ttl_s=settings.notify.dedup_ttl_s
        )
        if args.command == "ack":
            return await _ack(store, args, settings)
        if args.command == "unsilence":
            if await store.unsilence(args.model):
                print(f"silence lifted for {args.model}")
                return 0
            print(f"{args.model} was not silenced")
            return 1
        return await _silence(store, args)


async def _ack(store: PagingStore, args: argparse.Namespace, settings: Settings) -> int:
    """Acknowledge by a whole id or a unique prefix (the demo prints 12 characters); an
    alert already acknowledged keeps its first ack, and the command says whose."""
    wanted = args.alert_id.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,32}", wanted):
        raise ConfigError(
            f"alert id {args.alert_id!r}: give the id or its first characters (at least 4, "
            "0-9 and a-f)"
        )
    ids = [wanted] if len(wanted) == 32 else await store.alerts_with_prefix(wanted)
    alert = await store.alert(ids[0]) if len(ids) == 1 else None
    if len(ids) > 1:
        raise ConfigError(
            f"alert id prefix {wanted!r} is ambiguous: {', '.join(ids[:5])}"
            f"{' …' if len(ids) > 5 else ''}; give more characters"
        )
    if alert is None:
        raise ConfigError(
            f"unknown alert id {args.alert_id!r}: the notifier never delivered it, "
            "or its record expired"
        )
    earlier = await store.ack(alert, by=args.by, ack_ttl_s=settings.notify.ack_ttl_s)
    alert_id = alert["alert_id"]
    if earlier is not None:
        when = datetime.fromtimestamp(earlier["at_ms"] / 1000, tz=UTC)
        print(
            f"{alert_id} ({alert['model_id']} {alert['kind']}) was already acknowledged by "
            f"{earlier['by']} at {when:%Y-%m-%d %H:%M:%S}Z; that ack stands"
        )
        return 1
    hours = settings.notify.ack_ttl_s / 3600
    print(
        f"acknowledged {alert_id} ({alert['model_id']} {alert['kind']}) by {args.by}; "
        f"no escalation, and repeats of {alert['kind']} for {alert['model_id']} are held "
        f"for {hours:g} h"
    )
    return 0


async def _silence(store: PagingStore, args: argparse.Namespace) -> int:
    if args.list:
        silences = await store.silences()
        for s in silences:
            until = datetime.fromtimestamp(s.until, tz=UTC).isoformat(timespec="seconds")
            print(f"{s.model_id}\tuntil {until}\tby {s.by}\t{s.reason}")
        if not silences:
            print("no silences in force")
        return 0
    if not args.model or not args.duration:
        raise ConfigError("silence needs MODEL and --for DURATION (or --list)")
    try:
        seconds = parse_duration(args.duration)
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from exc
    if seconds <= 0:
        raise ConfigError("--for must be a positive duration")
    s = await store.silence(args.model, for_s=seconds, reason=args.reason, by=args.by)
    until = datetime.fromtimestamp(s.until, tz=UTC).isoformat(timespec="seconds")
    print(f"silenced {args.model} until {until}")
    return 0
