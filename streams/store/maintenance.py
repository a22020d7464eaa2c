"""Ownership hygiene: owners who stopped confirming, and models nobody retrains.

An owner registry rots quietly: people change teams, and a model keeps serving the version
trained a year ago. :func:`overdue` lists what is due, from two Redis reads whatever the
fleet size; the worker's :class:`MaintenanceWatch` turns it into ``maintenance_overdue``
info alerts (one per model, reason and period), and ``watchkeeper report`` lists it.

Reasons:

- ``unconfirmed``: the owner's last ``watchkeeper owners confirm`` (or, never confirmed,
  the time the entry was written) is older than its ``confirm_every`` (default 90 days).
- ``not_retrained``: the model's current version has been current for longer than its
  ``retrain_every`` (only when set). The worker records when each version became current
  (:class:`VersionLog`), so a model that never served a version is not judged.

A model "without a runbook" is not a reason: the registry refuses an entry without an
http(s) runbook, so every owned model has one, and an unowned model is an orphan
(``orphaned_model``).

Keys::

    {prefix}versions:{model}       hash: current -> version, v:<version> -> ms it became
                                   current (at most MAX_VERSIONS; expires with the model)
    {prefix}maintenance:{alert_id} marker: the alert of one (model, reason, period) is out
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis

from streams.contract.alerts import build_maintenance_alert, rfc3339_ms
from streams.errors import InvalidOwner
from streams.settings import Settings
from streams.store.breaker import OUTAGE_ERRORS, RedisBreaker
from streams.store.owners import Owner, format_duration

__all__ = [
    "MAX_VERSIONS",
    "MaintenanceWatch",
    "Overdue",
    "Reason",
    "VersionLog",
    "judge",
    "maintenance_alerts",
    "overdue",
    "version_since",
]

log = logging.getLogger(__name__)

Reason = Literal["unconfirmed", "not_retrained"]
MAX_VERSIONS = 20
"""Versions remembered per model (the oldest go first): enough to read a model's recent
history, bounded whatever a producer sends as model_version."""
VERSION_REFRESH_S = 3600.0
"""A worker re-states each model's current version this often, which keeps its key alive
while the model serves (the key expires ``model_retention_ms`` after the last write)."""

_RECORD_VERSION = """
local current = redis.call('HGET', KEYS[1], 'current')
local changed = current ~= ARGV[1]
if changed then
  redis.call('HSET', KEYS[1], 'current', ARGV[1], 'v:' .. ARGV[1], ARGV[2])
  local extra = redis.call('HLEN', KEYS[1]) - 1 - tonumber(ARGV[4])
  if extra > 0 then
    local all = redis.call('HGETALL', KEYS[1])
    local old = {}
    for i = 1, #all, 2 do
      if all[i] ~= 'current' and all[i] ~= 'v:' .. ARGV[1] then
        table.insert(old, {all[i], tonumber(all[i + 1]) or 0})
      end
    end
    table.sort(old, function(a, b) return a[2] < b[2] end)
    for i = 1, math.min(extra, #old) do redis.call('HDEL', KEYS[1], old[i][1]) end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if changed then return 1 end
return 0
"""


@dataclass(frozen=True, slots=True)
class Overdue:
    """One overdue item: ``since_ms`` is what the period counts from (the last
    confirmation, or when the current version became current)."""

    model_id: str
    owner: str
    reason: Reason
    since_ms: int
    message: str


def versions_key(prefix: str, model_id: str) -> str:
    return f"{prefix}versions:{model_id}"


async def overdue(redis: Redis, settings: Settings, now_ms: int) -> list[Overdue]:
    """Everything overdue at ``now_ms``, sorted by model and reason. Entries that no
    longer validate are skipped (the notifier counts them as ``owner_record_invalid``)."""
    found = await _overdue_with_owners(redis, settings.redis_prefix, now_ms)
    return [item for item, _, _ in found]


async def _overdue_with_owners(
    redis: Redis, prefix: str, now_ms: int
) -> list[tuple[Overdue, Owner, float]]:
    """:func:`overdue` with each item's owner entry and period in seconds."""
    raw = await redis.hgetall(f"{prefix}owners")
    owners: list[Owner] = []
    for value in raw.values():
        try:
            owners.append(Owner.from_json(value))
        except InvalidOwner:
            continue
    owners.sort(key=lambda o: o.model_id)
    retrained = [o for o in owners if o.retrain_every_s is not None]
    current: dict[str, tuple[str, int]] = {}
    if retrained:
        pipe = redis.pipeline(transaction=False)
        for o in retrained:
            pipe.hgetall(versions_key(prefix, o.model_id))
        for o, fields in zip(retrained, await pipe.execute(), strict=True):
            since = version_since(fields)
            if since is not None:
                current[o.model_id] = since

    return judge(owners, current, now_ms)


def judge(
    owners: list[Owner], current: Mapping[str, tuple[str, int]], now_ms: int
) -> list[tuple[Overdue, Owner, float]]:
    """What is overdue at ``now_ms`` among ``owners``, given each model's current version
    and since when (:func:`version_since`); each item with its owner and period (s)."""
    found: list[tuple[Overdue, Owner, float]] = []
    for o in sorted(owners, key=lambda o: o.model_id):
        since_ms = o.confirmed_since_ms
        if now_ms - since_ms >= o.confirm_every_s * 1000:
            item = Overdue(o.model_id, o.owner, "unconfirmed", since_ms, _unconfirmed(o, now_ms))
            found.append((item, o, o.confirm_every_s))
        if o.retrain_every_s is not None and o.model_id in current:
            version, since_ms = current[o.model_id]
            if now_ms - since_ms >= o.retrain_every_s * 1000:
                message = _not_retrained(o, version, since_ms, now_ms)
                item = Overdue(o.model_id, o.owner, "not_retrained", since_ms, message)
                found.append((item, o, o.retrain_every_s))
    return found


def version_since(fields: Mapping[Any, Any]) -> tuple[str, int] | None:
    """The current version and since when it is current, from a versions hash."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    version = text.get("current")
    if version is None:
        return None
    since = text.get(f"v:{version}")
    try:
        return version, int(since) if since is not None else 0
    except ValueError:
        return None


def _unconfirmed(o: Owner, now_ms: int) -> str:
    fix = f"watchkeeper owners confirm {shlex.quote(o.model_id)} --by YOUR_NAME"
    every = format_duration(o.confirm_every_s)
    if o.confirmed_at_ms is None:
        last = f"has not been confirmed since the entry was written ({_when(o.updated_at_ms)})"
    else:
        last = f"was last confirmed by {o.confirmed_by} {_when(o.confirmed_at_ms)}"
    return (
        f"ownership of model {o.model_id!r} by {o.owner!r} {last}, "
        f"{_age(now_ms - o.confirmed_since_ms)} ago; it must be confirmed every {every}: "
        f"`{fix}`"
    )


def _not_retrained(o: Owner, version: str, since_ms: int, now_ms: int) -> str:
    every = format_duration(o.retrain_every_s or 0)
    return (
        f"model {o.model_id!r} has served version {version!r} since {_when(since_ms)} "
        f"({_age(now_ms - since_ms)}), longer than its retrain_every of {every}: deploy a "
        f"retrained version, or change retrain_every with `watchkeeper owners set "
        f"{shlex.quote(o.model_id)} … --retrain-every DURATION`"
    )


def _when(ms: int) -> str:
    return rfc3339_ms(ms)[:19] + "Z"


def _age(ms: int) -> str:
    """Whole days, hours or minutes, the largest that fits (or seconds): enough to read."""
    seconds = max(0, ms // 1000)
    for unit, suffix in ((86_400, "d"), (3_600, "h"), (60, "m")):
        if seconds >= unit:
            return f"{seconds // unit}{suffix}"
    return f"{seconds}s"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def maintenance_alerts(
    found: list[tuple[Overdue, Owner, float]], now_ms: int
) -> list[dict[str, Any]]:
    """The ``maintenance_overdue`` alert of each item of :func:`judge`, in the same order;
    the period index counts whole periods since ``since_ms`` (1 when just overdue)."""
    at = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return [
        build_maintenance_alert(
            item.model_id,
            reason=item.reason,
            since_ms=item.since_ms,
            period_index=(now_ms - item.since_ms) // max(int(period_s * 1000), 1),
            detected_at=at,
            message=item.message,
            owner=owner.owner,
            runbook=owner.runbook,
        )
        for item, owner, period_s in found
    ]


class VersionLog:
    """Records when each model's version became current, for ``not_retrained``.

    The worker notes the version of every health snapshot (no I/O) and :meth:`flush`
    writes only what changed, plus a refresh every ``refresh_s`` that keeps the key alive,
    in one pipeline. A version that comes back (a rollback) is current again from then.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str = "wk:",
        *,
        retention_ms: int,
        max_models: int = 10_000,
        refresh_s: float = VERSION_REFRESH_S,
        flush_s: float = 1.0,
        clock: Any = time.time,
        monotonic: Any = time.monotonic,
        breaker: RedisBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_ms = retention_ms
        self.max_models = max_models
        self.refresh_s = refresh_s
        self.flush_s = flush_s
        self._flush_due = 0.0
        self.clock = clock
        self.monotonic = monotonic
        self.breaker = breaker or RedisBreaker()
        self._written: dict[str, tuple[str, float]] = {}  # model -> (version, refresh due)
        self._pending: dict[str, str] = {}
        self._script = redis.register_script(_RECORD_VERSION)

    def note(self, versions: Mapping[str, str]) -> None:
        """The versions models serve now (empty: no version, not judged)."""
        now = self.monotonic()
        for model, version in versions.items():
            if not version:
                continue
            written = self._written.get(model)
            if written is None or written[0] != version or written[1] <= now:
                self._pending[model] = version
            else:  # back to the version written (a canary's flip): nothing to write
                self._pending.pop(model, None)

    async def maybe_flush(self) -> None:
        """:meth:`flush` at most every ``flush_s``: the worker calls it per batch, and a
        canary's versions flip from batch to batch."""
        now = self.monotonic()
        if now >= self._flush_due:
            self._flush_due = now + self.flush_s
            await self.flush()

    async def flush(self) -> None:
        """Write pending versions; on a Redis outage they stay pending."""
        if not self._pending or not self.breaker.available():
            return
        pending, now_ms = dict(self._pending), int(self.clock() * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for model, version in pending.items():
                    await self._script(
                        keys=[versions_key(self.prefix, model)],
                        args=[version, now_ms, self.retention_ms, MAX_VERSIONS],
                        client=pipe,
                    )
                await pipe.execute()
        except OUTAGE_ERRORS as exc:
            self.breaker.failed(f"recording the versions of {len(pending)} models", exc)
            return
        self.breaker.succeeded()
        if len(self._written) + len(pending) > 2 * self.max_models:
            self._written.clear()  # bounded: a model forgotten here is only re-stated
        due = self.monotonic() + self.refresh_s
        for model, version in pending.items():
            self._written[model] = (version, due)
            if self._pending.get(model) == version:
                del self._pending[model]


class MaintenanceWatch:
    """Raises ``maintenance_overdue`` for :func:`overdue` items, once per (model, reason,
    period) across workers and restarts.

    The period index counts whole periods since ``since_ms``, and the alert id hashes it
    with the model, the reason and ``since_ms``: every worker derives the same id, and a
    confirmation (a new ``since_ms``) starts a new series. Each id is claimed in Redis
    (SET NX) before it is published, so a second worker or a restart does not publish it
    again; a failed publish gives the claim back.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str = "wk:",
        *,
        clock: Any = time.time,
        breaker: RedisBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self.breaker = breaker or RedisBreaker()

    def _marker(self, alert_id: str) -> str:
        return f"{self.prefix}maintenance:{alert_id}"

    async def due(self) -> list[dict[str, Any]]:
        """The alerts this worker claimed and should publish now (then :meth:`release`
        them if publishing fails)."""
        if not self.breaker.available():
            return []
        now_ms = int(self.clock() * 1000)
        try:
            found = await _overdue_with_owners(self.redis, self.prefix, now_ms)
            alerts = maintenance_alerts(found, now_ms)
            periods = [period_s for _, _, period_s in found]
            if not alerts:
                self.breaker.succeeded()
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for alert, period_s in zip(alerts, periods, strict=True):
                    ttl_ms = int(period_s * 1000) + 60_000  # the id changes with the period
                    pipe.set(self._marker(alert["alert_id"]), now_ms, nx=True, px=ttl_ms)
                claimed = await pipe.execute()
        except OUTAGE_ERRORS as exc:
            self.breaker.failed("checking owners and versions for overdue maintenance", exc)
            return []
        self.breaker.succeeded()
        return [a for a, ok in zip(alerts, claimed, strict=True) if ok]

    async def release(self, alerts: list[dict[str, Any]]) -> None:
        """Give claims back after a failed publish, so the next check raises them."""
        if not alerts:
            return
        try:
            await self.redis.delete(*(self._marker(a["alert_id"]) for a in alerts))
        except OUTAGE_ERRORS as exc:
            log.warning("could not release %d maintenance claims: %r", len(alerts), exc)
