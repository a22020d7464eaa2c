"""``watchkeeper owners …``: register, inspect and import model owners, and list orphans.

A thin layer over :mod:`streams.owners`: parse flags, call the registry, print. Bad input
raises :class:`~streams.errors.InvalidOwner` or :class:`~streams.errors.ConfigError`, which
the main CLI turns into a message and exit code 2; "that model has no owner" is an answer,
not an error, and exits 1.

Human output masks Slack webhook URLs and PagerDuty routing keys, which are credentials
that should not end up in terminal scrollback or CI logs; ``--json`` prints full channel
specs, for scripts and backups.

``set`` and ``import`` apply the notifier's outbound policy (streams.outbound) with
the same allowlist the notifier reads (WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS): a
channel on a loopback, link-local, private or reserved address is refused here, naming
the rule, rather than failing at send time.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis

from streams.cli.security import REDIS_FLAG_FIELDS, add_redis_flags
from streams.contract.notification import Channel
from streams.errors import ConfigError
from streams.outbound import TargetPolicy
from streams.redact import redact
from streams.settings import Settings
from streams.store.owners import (
    Orphan,
    Owner,
    OwnerRegistry,
    find_orphans,
    format_duration,
    load_owners_file,
)
from streams.store.session import redis_session

__all__ = ["add_owner_commands", "run_owners"]


def add_owner_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``owners`` and its actions to the top-level subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    add_redis_flags(common.add_argument_group("Redis"))
    owners = sub.add_parser(
        "owners",
        help="who answers for each model: register, list, import, find orphans",
        description="Manage the owner registry: every deployed model needs an accountable owner.",
    )
    actions = owners.add_subparsers(dest="owners_command", required=True, metavar="ACTION")

    put = actions.add_parser("set", parents=[common], help="register or replace a model's owner")
    put.add_argument("model", metavar="MODEL", help="model_id as it appears in prediction events")
    put.add_argument("--owner", required=True, help="accountable person or team")
    put.add_argument(
        "--channel",
        dest="channels",
        action="append",
        required=True,
        metavar="SPEC",
        help="KIND:TARGET to page (webhook, slack, pagerduty, email); repeat for several",
    )
    put.add_argument("--runbook", required=True, metavar="URL", help="http(s) URL of the runbook")
    put.add_argument(
        "--escalate-after",
        metavar="DURATION",
        help="escalate a page nobody acknowledged after this long (30m, 2h, 1h30m)",
    )
    put.add_argument(
        "--escalation-channel",
        dest="escalation_channels",
        action="append",
        default=[],
        metavar="SPEC",
        help="KIND:TARGET paged on escalation; required with --escalate-after",
    )
    put.add_argument(
        "--confirm-every",
        metavar="DURATION",
        help="the owner confirms ownership this often, or maintenance_overdue is raised "
        "(default 90d)",
    )
    put.add_argument(
        "--retrain-every",
        metavar="DURATION",
        help="raise maintenance_overdue when one model version serves longer than this "
        "(default: not judged)",
    )

    confirm = actions.add_parser(
        "confirm",
        parents=[common],
        help="record that the owner still answers for a model",
        description="Record who confirmed ownership of MODEL, and when. An owner not "
        "confirmed within its confirm_every (default 90d) raises maintenance_overdue.",
    )
    confirm.add_argument("model", metavar="MODEL")
    confirm.add_argument(
        "--by", default=None, help="who confirms (default: the login name of this user)"
    )

    listing = actions.add_parser("list", parents=[common], help="every registered owner")
    listing.add_argument("--json", action="store_true", help="print JSON (full channel specs)")

    show = actions.add_parser("show", parents=[common], help="one model's owner")
    show.add_argument("model", metavar="MODEL")
    show.add_argument("--json", action="store_true", help="print JSON (full channel specs)")

    remove = actions.add_parser("remove", parents=[common], help="unregister a model's owner")
    remove.add_argument("model", metavar="MODEL")

    load = actions.add_parser(
        "import", parents=[common], help="register every owner in a YAML file, all or nothing"
    )
    load.add_argument(
        "file", metavar="FILE", type=Path, help="YAML file with a top-level 'owners:' mapping"
    )

    orphans = actions.add_parser(
        "orphans", parents=[common], help="models seen in traffic that have no owner"
    )
    orphans.add_argument(
        "--days", type=_positive_days, default=7.0, help="look-back window (default 7)"
    )
    orphans.add_argument("--json", action="store_true", help="print JSON")


def run_owners(args: argparse.Namespace) -> int:
    """Run one ``owners`` action; returns the exit code (0 done, 1 model not registered)."""
    try:
        given = {n: getattr(args, n) for n in REDIS_FLAG_FIELDS if getattr(args, n) is not None}
        settings = Settings(**given)
    except ValidationError as exc:
        raise ConfigError(str(exc)) from exc
    handler = _HANDLERS[args.owners_command]
    return asyncio.run(_with_redis(settings, handler, args))


Handler = Callable[[argparse.Namespace, Redis, str], Awaitable[int]]


async def _with_redis(settings: Settings, handler: Handler, args: argparse.Namespace) -> int:
    args.policy = TargetPolicy.allowing(settings.notify.allow_private_targets)
    async with redis_session(settings) as redis:
        return await handler(args, redis, settings.redis_prefix)


async def _set(args: argparse.Namespace, redis: Redis, prefix: str) -> int:
    owner = Owner.from_specs(
        args.model,
        owner=args.owner,
        channels=args.channels,
        runbook=args.runbook,
        escalate_after=args.escalate_after,
        escalation_channels=args.escalation_channels,
        confirm_every=args.confirm_every,
        retrain_every=args.retrain_every,
    )
    created = await OwnerRegistry(redis, prefix, policy=args.policy).set(owner)
    print(f"{'registered' if created else 'replaced'} owner of {owner.model_id}: {owner.owner}")
    return 0


async def _confirm(args: argparse.Namespace, redis: Redis, prefix: str) -> int:
    by = _confirmer(args.by)
    now_ms = int(time.time() * 1000)
    owner = await OwnerRegistry(redis, prefix).confirm(args.model, by=by, now_ms=now_ms)
    if owner is None:
        print(f"watchkeeper: no owner registered for {args.model!r}", file=sys.stderr)
        return 1
    due = _iso(now_ms + int(owner.confirm_every_s * 1000))
    print(
        f"confirmed {owner.owner} as owner of {owner.model_id} (by {owner.confirmed_by}); "
        f"next confirmation due {due}"
    )
    return 0


def _confirmer(by: str | None) -> str:
    """``--by``, else the login name: a confirmation says who vouched."""
    if by is None:
        try:
            by = getpass.getuser()
        except (KeyError, OSError) as exc:
            raise ConfigError("owners confirm: cannot tell who you are; pass --by NAME") from exc
    if not by.strip():
        raise ConfigError("owners confirm: --by must be a non-empty name")
    return by.strip()


async def _list(args: argparse.Namespace, redis: Redis, prefix: str) -> int:
    owners = await OwnerRegistry(redis, prefix).list()
    if args.json:
        _print_json([o.to_dict() for o in owners])
    elif not owners:
        print("no owners registered")
    else:
        headers = ("MODEL", "OWNER", "CHANNELS", "ESCALATION", "RUNBOOK")
        _print_table(headers, [_owner_row(o) for o in owners])
    return 0


async def _show(args: argparse.Namespace, redis: Redis, prefix: str) -> int:
    owner = await OwnerRegistry(redis, prefix).get(args.model)
    if owner is None:
        print(f"watchkeeper: no owner registered for {args.model!r}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(owner.to_dict())
        return 0
    escalate = "-" if owner.escalate_after_s is None else format_duration(owner.escalate_after_s)
    fields = {
        "model": owner.model_id,
        "owner": owner.owner,
        "channels": _channels(owner.channels),
        "runbook": owner.runbook,
        "escalate after": escalate,
        "escalation channels": _channels(owner.escalation_channels) or "-",
        "updated": _iso(owner.updated_at_ms),
        "confirmed": _confirmation(owner),
        "confirm every": f"{format_duration(owner.confirm_every_s)}, next due "
        f"{_iso(owner.confirmed_since_ms + int(owner.confirm_every_s * 1000))}",
        "retrain every": "-"
        if owner.retrain_every_s is None
        else format_duration(owner.retrain_every_s),
    }
    width = max(map(len, fields)) + 1
    for name, value in fields.items():
        print(f"{name + ':':<{width}} {value}")
    return 0


async def _remove(args: argparse.Namespace, redis: Redis, prefix: str) -> int:
    if not await OwnerRegistry(redis, prefix).remove(args.model):
        print(f"watchkeeper: no owner registered for {args.model!r}", file=sys.stderr)
        return 1
    print(f"removed owner of {args.model}")
    return 0


async def _import(args: argparse.Namespace, redis: Redis, prefix: str) -> int:
    owners = load_owners_file(args.file)  # raises before anything is written
    count = await OwnerRegistry(redis, prefix, policy=args.policy).import_many(owners)
    print(f"imported {count} owner{'' if count == 1 else 's'} from {args.file}")
    return 0


async def _orphans(args: argparse.Namespace, redis: Redis, prefix: str) -> int:
    now_ms = int(time.time() * 1000)
    orphans = await find_orphans(redis, prefix, days=args.days, now_ms=now_ms)
    if args.json:
        _print_json([o.to_dict() for o in orphans])
    elif not orphans:
        print(f"no orphans: every model seen in the last {args.days:g} days has an owner")
    else:
        headers = ("MODEL", "PREDICTIONS", "LAST SEEN", "LAST ALERT")
        _print_table(headers, [_orphan_row(o, now_ms) for o in orphans])
    return 0


_HANDLERS: dict[str, Handler] = {
    "set": _set,
    "confirm": _confirm,
    "list": _list,
    "show": _show,
    "remove": _remove,
    "import": _import,
    "orphans": _orphans,
}


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not math.isfinite(days) or days <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of days, got {text!r}")
    return days


def _owner_row(owner: Owner) -> tuple[str, ...]:
    escalation = "-"
    if owner.escalate_after_s is not None:
        escalation = (
            f"{format_duration(owner.escalate_after_s)} -> {_channels(owner.escalation_channels)}"
        )
    return (owner.model_id, owner.owner, _channels(owner.channels), escalation, owner.runbook)


def _confirmation(owner: Owner) -> str:
    if owner.confirmed_at_ms is None:
        return "never"
    return f"{_iso(owner.confirmed_at_ms)} by {owner.confirmed_by}"


def _orphan_row(orphan: Orphan, now_ms: int) -> tuple[str, ...]:
    age = format_duration(max(0, (now_ms - orphan.last_seen_ms) // 1000))
    alert = "-"
    if orphan.last_alert_id is not None:
        alert = f"{orphan.last_alert_kind or '?'} {orphan.last_alert_id}"
    seen = f"{_iso(orphan.last_seen_ms)} ({age} ago)"
    return (orphan.model_id, str(orphan.predictions), seen, alert)


def _channels(channels: Sequence[Channel]) -> str:
    return ", ".join(_masked(c) for c in channels)


def _masked(channel: Channel) -> str:
    """Slack webhook URLs and PagerDuty routing keys are credentials: show only a tail;
    anything else is redacted (userinfo, token query parameters) by streams.redact."""
    if channel.kind == "pagerduty":
        return f"pagerduty:…{channel.target[-4:]}"
    if channel.kind == "slack":
        url = urlsplit(channel.target)
        return f"slack:{url.scheme}://{url.netloc.rpartition('@')[2]}/…{channel.target[-4:]}"
    return redact(str(channel))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned plain text: no colour or box drawing, so grep and awk work on it."""
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    for row in (headers, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
