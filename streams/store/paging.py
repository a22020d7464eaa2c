"""Paging state in Redis, shared by every notifier replica and by the ``ack``/``silence``
commands: what was decided for each alert, which deliveries are claimed or done, acks,
silences, cooldowns and pending escalations.

Times are read from the caller's clock and stored in the values (Redis TTLs only clean
up), so that tests can move time instead of sleeping through it. Every decision that two
replicas could race on is one Lua script or one ``SET NX``.

Keys (``prefix`` defaults to ``wk:``), all under ``{prefix}notify:``:
    decision:{alert_id}            deliver | silenced | acknowledged | cooldown (first call wins);
                                   for a resolving alert: info | resolve|{dedup_key}
                                   (decision:{alert_id}:resolved for a status "resolved" one)
    cooldown:{model}:{kind}        "{until_ms}:{severity rank}:{group}" of the last page
    sent:{delivery}:{channel}      pending|token|deadline_ms|page|redeliveries, sent|ms,
                                   dlq|reason (delivery = alert_id, alert_id:escalation, or
                                   alert_id:resolved for a resolve page of a resolved alert);
                                   page is empty until the page is about to be sent
    page:{page}:{channel}          the page as sent (JSON), while it is pending: what a
                                   replica re-sends, byte for byte, when its sender died
    {family}-seen:{item}           an item already counted in a summary window
    {family}:{window}              hash of counts in that window
    {family}-sample:{window}       hash of the first N items' names (model ids) -> order
    {family}-closed:{window}       set once the window's summary is being sent
    {family}-windows               zset window -> window end ms (summaries to send)
                                   families: dead (dead letters, for the fallback), orphans
                                   (orphaned_model alerts, for the fallback), held (pages
                                   past a channel's rate limit, for that channel); window
                                   is start_ms, or channel_key:start_ms for held
    held-channel:{channel}         the channel spec a held-back summary goes to
    rate:{channel}:{minute_ms}     pages sent to a channel in that minute (all replicas)
    alert:{alert_id}               the alert as delivered, or as suppressed as info (for
                                   ack, escalation and lookups)
    ack:{alert_id}                 who acknowledged, when
    ack-kind:{model}:{kind}        until_ms: an ack stops repeats of its model and kind
    silence:{model}                until_ms; silence-info:{model} holds who and why
    open:{model}                   dedup key of the open performance_degradation incident
                                   (closed by a performance_improvement or a resolved alert)
    open:{model}:{kind}            dedup key of the open incident of any other kind (closed
                                   by an alert of that kind with status "resolved")
    opened:{alert_id}              the alert already opened its incident: a redelivery or a
                                   replay does not open it again after it was resolved
    escalations                    zset alert_id -> due_ms
    stats                          hash of counters (delivered, suppressed_*, dlq, ...)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.asyncio import Redis

__all__ = ["Claim", "Clock", "PagingStore", "Silence", "Takeover", "Window", "WindowCounts"]

Clock = Callable[[], float]  # seconds since the epoch
Decision = Literal["deliver", "silenced", "acknowledged", "cooldown"]
DEGRADATION = "performance_degradation"  # its incident keeps the key it had before kinds
ClaimState = Literal["claimed", "done", "busy", "in_doubt"]
TakeoverState = Literal["taken", "busy", "done"]
UNKNOWN_PAGE = "?"  # a claim written before pages were recorded: its page is not known

_DECIDE = """
local d = redis.call('GET', KEYS[1])
if d then return d end
local now = tonumber(ARGV[1])
local decision = 'deliver'
local s = redis.call('GET', KEYS[4])
local a = redis.call('GET', KEYS[3])
if s and tonumber(s) > now then
  decision = 'silenced'
elseif a and tonumber(a) > now then
  decision = 'acknowledged'
else
  local c = redis.call('GET', KEYS[2])
  if c then
    local until_ms, rank, group = string.match(c, '^(%d+):(%d+):(.*)$')
    if tonumber(until_ms) > now and tonumber(ARGV[3]) <= tonumber(rank)
       and group ~= ARGV[5] then
      decision = 'cooldown'
    end
  end
end
if decision == 'deliver' and tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[2], tostring(now + tonumber(ARGV[2])) .. ':' .. ARGV[3] .. ':' .. ARGV[5],
             'PX', tonumber(ARGV[2]) + 60000)
end
redis.call('SET', KEYS[1], decision, 'PX', ARGV[4])
return decision
"""

_RESOLVE = """
local d = redis.call('GET', KEYS[1])
if d then return d end
local o = redis.call('GET', KEYS[2])
local decision = 'info'
if o then
  decision = 'resolve|' .. o
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], decision, 'PX', ARGV[1])
return decision
"""

# Open an incident unless every alert of its page opened it before (a redelivered or
# replayed trigger must not reopen an incident that was resolved since). KEYS: the
# incident, then one opened:{alert_id} per alert. ARGV: dedup key, ttl.
_OPEN = """
local fresh = #KEYS == 1
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then fresh = true end
end
if fresh then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if fresh then return 1 end
return 0
"""

# Bind claims to the page about to be sent, or renew their lease: all or nothing, so a
# page is never sent for claims another replica has taken over.
_REBIND = """
local n = #KEYS - 1
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[i] then return i end
end
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[n + i], 'PX', ARGV[2 * n + 1])
end
if ARGV[2 * n + 2] ~= '' then
  redis.call('SET', KEYS[n + 1], ARGV[2 * n + 2], 'PX', ARGV[2 * n + 1])
end
return 0
"""

# Take over every claim of a page whose holder missed its deadline, in one step, so that
# exactly one replica re-sends it. KEYS[1] is the claim that was found in doubt.
_TAKEOVER = """
local now, page = tonumber(ARGV[1]), ARGV[2]
local function parse(v)
  if not v then return nil end
  local t, d, p, r = string.match(v, '^pending|([^|]*)|(%d+)|([^|]*)|(%d+)$')
  if t then return t, tonumber(d), p, tonumber(r) end
  t, d = string.match(v, '^pending|([^|]*)|(%d+)$')
  if t then return t, tonumber(d), '?', 0 end
  return nil
end
local _, deadline, p, r = parse(redis.call('GET', KEYS[1]))
if not deadline or p ~= page then return {'done', 0} end
if deadline > now then return {'busy', deadline} end
local moved = {'taken', r + 1}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  local _, d, pi, ri = parse(v)
  if d and pi == page and d <= now then
    local value = 'pending|' .. ARGV[3] .. '|' .. ARGV[4] .. '|' .. page .. '|' .. (r + 1)
    redis.call('SET', KEYS[i], value, 'PX', ARGV[5])
    table.insert(moved, i)
    table.insert(moved, value)
  end
end
return moved
"""

# Finish every claim of a page at once (a crash cannot leave half of it pending).
_FINISH = """
local n = #KEYS - 1
local done = 0
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('SET', KEYS[i], ARGV[n + 1], 'PX', ARGV[n + 2])
    done = done + 1
  end
end
redis.call('DEL', KEYS[n + 1])
return done
"""

# Count an item (a dead letter, an orphan alert, a held page) once in its summary window
# (0: counted before; -1: the window's summary is already out, count it in the next one).
# KEYS: seen, counts, closed, windows, sample. ARGV: ttl, window, end_ms, sample name,
# sample cap, then the fields to increment.
_RECORD_IN_WINDOW = """
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
for i = 6, #ARGV do redis.call('HINCRBY', KEYS[2], ARGV[i], 1) end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
if ARGV[4] ~= '' then
  local n = redis.call('HLEN', KEYS[5])
  if n < tonumber(ARGV[5]) and redis.call('HSETNX', KEYS[5], ARGV[4], n + 1) == 1 then
    redis.call('PEXPIRE', KEYS[5], ARGV[1])
  end
end
redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[2])
return 1
"""

_CLOSE_WINDOW = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""

# One page slot in a channel's minute; the count is shared by every replica.
_TAKE_SLOT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""

_CAS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming one (alert, channel) delivery."""

    state: ClaimState
    key: str
    value: str = ""
    retry_at: float = 0.0  # for "busy": when the holder's lease runs out
    page: str = ""  # for "in_doubt": the page its dead holder was sending


@dataclass(frozen=True, slots=True)
class Takeover:
    """The outcome of taking over a page in doubt.

    ``taken``: ``claims`` are now ours and ``page`` is the page as it was sent (None if
    it was not recorded), sent ``redeliveries`` times so far, counting this one.
    ``busy``: another replica took it over first, until ``retry_at``. ``done``: finished.
    """

    state: TakeoverState
    page: dict[str, Any] | None = None
    claims: tuple[Claim, ...] = ()
    redeliveries: int = 0
    retry_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Window:
    """One summary window of a ``family`` (dead, orphans, held); ``scope`` narrows it to
    one channel (held pages) or is empty (the fallback's summaries)."""

    family: str
    start_ms: int
    scope: str = ""

    @property
    def id(self) -> str:
        return f"{self.scope}:{self.start_ms}" if self.scope else str(self.start_ms)

    @classmethod
    def parse(cls, family: str, window_id: str) -> Window:
        scope, _, start = window_id.rpartition(":")
        return cls(family, int(start), scope)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """A closed window: its counts, and the first items by name in arrival order."""

    counts: dict[str, int]
    sample: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Silence:
    model_id: str
    until: float
    reason: str
    by: str


class PagingStore:
    """Redis-backed paging state; ``clock`` decides what "now" is."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "wk:",
        *,
        clock: Clock,
        ttl_s: float = 7 * 86_400.0,
    ) -> None:
        self.redis = redis
        self.prefix = prefix + "notify:"
        self.clock = clock
        self.ttl_ms = int(ttl_s * 1000)
        self.token = secrets.token_hex(8)  # this process; claims of others look foreign
        self._decide = redis.register_script(_DECIDE)
        self._cas = redis.register_script(_CAS)
        self._resolve = redis.register_script(_RESOLVE)
        self._open = redis.register_script(_OPEN)
        self._rebind = redis.register_script(_REBIND)
        self._takeover = redis.register_script(_TAKEOVER)
        self._finish = redis.register_script(_FINISH)
        self._record_in_window = redis.register_script(_RECORD_IN_WINDOW)
        self._close_window = redis.register_script(_CLOSE_WINDOW)
        self._take_slot = redis.register_script(_TAKE_SLOT)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- decisions ---------------------------------------------------------------------

    async def decide(
        self, alert: dict[str, Any], *, cooldown_s: float, rank: int, group: str
    ) -> Decision:
        """Deliver, or why not. Recorded on first call: a redelivered alert gets the same
        answer, so a restart cannot turn a page into a cooldown suppression. Alerts of one
        ``group`` (one notification) do not hold each other back."""
        model, kind = alert["model_id"], alert["kind"]
        result = await self._decide(
            keys=[
                self.key("decision", alert["alert_id"]),
                self.key("cooldown", model, kind),
                self.key("ack-kind", model, kind),
                self.key("silence", model),
            ],
            args=[self.now_ms(), int(cooldown_s * 1000), rank, self.ttl_ms, group],
        )
        return _text(result)  # type: ignore[return-value]

    async def decide_resolve(
        self, alert: dict[str, Any], *, kind: str = DEGRADATION, suffix: str = ""
    ) -> str | None:
        """For a resolving alert (an improvement, or an alert with status "resolved"): the
        dedup key of the open incident of its model and ``kind`` that it resolves, or None.
        Closing the incident and recording the decision (under the alert's id and
        ``suffix``) is one step, so exactly one replica resolves it and a redelivered alert
        resolves the same incident."""
        result = _text(
            await self._resolve(
                keys=[
                    self.key("decision", alert["alert_id"] + suffix),
                    self.incident_key(alert["model_id"], kind),
                ],
                args=[self.ttl_ms],
            )
        )
        state, _, dedup_key = result.partition("|")
        return dedup_key if state == "resolve" else None

    # --- delivery claims ---------------------------------------------------------------

    def _sent_key(self, delivery: str, channel_key: str) -> str:
        return self.key("sent", delivery, channel_key)

    def _pending(self, lease_s: float, page: str = "", redeliveries: int = 0) -> str:
        deadline = self.now_ms() + int(lease_s * 1000)
        return f"pending|{self.token}|{deadline}|{page}|{redeliveries}"

    async def claim(self, delivery: str, channel_key: str, *, lease_s: float) -> Claim:
        """Claim the delivery of one alert to one channel, at most once across replicas.

        A claim whose holder missed its deadline before binding it to a page was never
        sent: it is claimed again. One bound to a page is *in doubt* (the holder died
        mid-request, the receiver may have it): the caller re-sends that page through
        :meth:`take_over`, which lets exactly one replica do so."""
        key = self._sent_key(delivery, channel_key)
        value = self._pending(lease_s)
        if await self.redis.set(key, value, nx=True, px=self.ttl_ms):
            return Claim("claimed", key, value)
        current = _text(await self.redis.get(key))
        if not current:  # expired between the two calls: try once more
            return await self.claim(delivery, channel_key, lease_s=lease_s)
        pending = _parse_pending(current)
        if pending is None:
            return Claim("done", key, current)
        _token, deadline, page, _redeliveries = pending
        if deadline > self.now_ms():
            return Claim("busy", key, current, retry_at=deadline / 1000)
        if page:
            return Claim("in_doubt", key, current, page=page)
        if await self._cas(keys=[key], args=[current, value, self.ttl_ms]):
            await self.count(reclaimed=1)  # its holder died before sending anything
            return Claim("claimed", key, value)
        return await self.claim(delivery, channel_key, lease_s=lease_s)

    async def bind(
        self,
        claims: Sequence[Claim],
        page: str,
        channel_key: str,
        record: dict[str, Any],
        *,
        lease_s: float,
    ) -> tuple[Claim, ...] | int:
        """Record the page about to be sent and bind ``claims`` to it: from here on, a
        crash leaves the page in doubt and another replica re-sends ``record``.

        All or nothing: the bound claims, or the index of one that is no longer ours."""
        return await self._rebind_claims(
            claims, self._pending(lease_s, page), self._page_key(page, channel_key), record
        )

    async def renew(self, claims: Sequence[Claim], *, lease_s: float) -> tuple[Claim, ...] | int:
        """Move the deadline of claims bound to one page (before each attempt, so a slow
        but live sender is never taken over). Same answer as :meth:`bind`."""
        pending = _parse_pending(claims[0].value)
        page, redeliveries = (pending[2], pending[3]) if pending else ("", 0)
        value = self._pending(lease_s, page, redeliveries)
        return await self._rebind_claims(claims, value, self.key("unused"), None)

    async def _rebind_claims(
        self,
        claims: Sequence[Claim],
        value: str,
        page_key: str,
        record: dict[str, Any] | None,
    ) -> tuple[Claim, ...] | int:
        body = orjson.dumps(record).decode() if record is not None else ""
        lost = int(
            await self._rebind(
                keys=[*(c.key for c in claims), page_key],
                args=[*(c.value for c in claims), *(value for _ in claims), self.ttl_ms, body],
            )
        )
        if lost:
            return lost - 1
        return tuple(Claim("claimed", c.key, value) for c in claims)

    async def take_over(self, claim: Claim, channel_key: str, *, lease_s: float) -> Takeover:
        """Take over the page an in-doubt ``claim`` belongs to, with all its claims.

        The page is re-sent as it was (same alerts, delivery id and dedup key), so
        receivers that deduplicate see one page."""
        record = None
        keys = [claim.key]
        if claim.page != UNKNOWN_PAGE:
            raw = await self.redis.get(self._page_key(claim.page, channel_key))
            if raw is not None:
                record = orjson.loads(raw)
                suffix = record.get("suffix", "")
                keys += [
                    k
                    for a in record["alerts"]
                    if (k := self._sent_key(a["alert_id"] + suffix, channel_key)) != claim.key
                ]
        deadline = self.now_ms() + int(lease_s * 1000)
        result = await self._takeover(
            keys=keys,
            args=[self.now_ms(), claim.page, self.token, deadline, self.ttl_ms],
        )
        state, number, *moved = (_text(v) for v in result)
        if state == "busy":
            return Takeover("busy", retry_at=int(number) / 1000)
        if state != "taken":
            return Takeover("done")
        claims = tuple(
            Claim("claimed", keys[int(moved[i]) - 1], moved[i + 1]) for i in range(0, len(moved), 2)
        )
        return Takeover("taken", record, claims, int(number))

    async def finish(self, claim: Claim, outcome: str) -> bool:
        """Record ``sent|…`` or ``dlq|reason`` if the claim is still ours."""
        return bool(await self._cas(keys=[claim.key], args=[claim.value, outcome, self.ttl_ms]))

    async def finish_page(
        self, claims: Sequence[Claim], page: str, channel_key: str, outcome: str
    ) -> int:
        """Record one outcome for every claim of a page at once; drops the page record."""
        return int(
            await self._finish(
                keys=[*(c.key for c in claims), self._page_key(page, channel_key)],
                args=[*(c.value for c in claims), outcome, self.ttl_ms],
            )
        )

    def _page_key(self, page: str, channel_key: str) -> str:
        return self.key("page", page, channel_key)

    async def delivery_state(self, delivery: str, channel_key: str) -> str | None:
        return _text(await self.redis.get(self._sent_key(delivery, channel_key))) or None

    # --- alerts, acks, silences ---------------------------------------------------------

    async def remember(self, alert: dict[str, Any]) -> None:
        await self.redis.set(
            self.key("alert", alert["alert_id"]), orjson.dumps(alert), px=self.ttl_ms
        )

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.key("alert", alert_id))
        return None if raw is None else orjson.loads(raw)

    async def alerts_with_prefix(self, prefix: str, *, most: int = 10) -> list[str]:
        """Ids of remembered alerts that start with ``prefix`` (hex: alert ids are), at
        most ``most``: what ``ack`` takes in place of a whole id."""
        found: list[str] = []
        async for raw_key in self.redis.scan_iter(match=self.key("alert", prefix + "*")):
            found.append(_text(raw_key).removeprefix(self.key("alert", "")))
            if len(found) >= most:
                break
        return sorted(found)

    async def ack(
        self, alert: dict[str, Any], *, by: str, ack_ttl_s: float
    ) -> dict[str, Any] | None:
        """Acknowledge ``alert``; None, or the earlier ack (who, when), which stays."""
        now = self.now_ms()
        record = orjson.dumps({"by": by, "at_ms": now})
        first = await self.redis.set(
            self.key("ack", alert["alert_id"]), record, px=self.ttl_ms, nx=True
        )
        if not first:
            return await self.acked(alert["alert_id"])
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(
            self.key("ack-kind", alert["model_id"], alert["kind"]),
            now + int(ack_ttl_s * 1000),
            px=int(ack_ttl_s * 1000) + 60_000,
        )
        pipe.zrem(self.key("escalations"), alert["alert_id"])
        await pipe.execute()
        return None

    async def acked(self, alert_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.key("ack", alert_id))
        return None if raw is None else orjson.loads(raw)

    async def silence(self, model_id: str, *, for_s: float, reason: str, by: str) -> Silence:
        until = self.now_ms() + int(for_s * 1000)
        px = int(for_s * 1000) + 60_000
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.key("silence", model_id), until, px=px)
        pipe.set(
            self.key("silence-info", model_id),
            orjson.dumps({"until_ms": until, "reason": reason, "by": by}),
            px=px,
        )
        await pipe.execute()
        return Silence(model_id, until / 1000, reason, by)

    async def unsilence(self, model_id: str) -> bool:
        removed = await self.redis.delete(
            self.key("silence", model_id), self.key("silence-info", model_id)
        )
        return bool(removed)

    async def silences(self) -> list[Silence]:
        """Silences still in force by the store's clock."""
        now = self.now_ms()
        found: list[Silence] = []
        async for raw_key in self.redis.scan_iter(match=self.key("silence-info", "*")):
            raw = await self.redis.get(raw_key)
            if raw is None:
                continue
            info = orjson.loads(raw)
            if info["until_ms"] > now:
                model = _text(raw_key).removeprefix(self.key("silence-info", ""))
                found.append(Silence(model, info["until_ms"] / 1000, info["reason"], info["by"]))
        return sorted(found, key=lambda s: s.model_id)

    # --- incidents and escalation -------------------------------------------------------

    def incident_key(self, model_id: str, kind: str = DEGRADATION) -> str:
        """Where the open incident of ``model_id`` and ``kind`` is kept (a degradation's
        key has no kind: incidents opened before kinds had their own stay resolvable)."""
        if kind == DEGRADATION:
            return self.key("open", model_id)
        return self.key("open", model_id, kind)

    async def open_incident(
        self,
        model_id: str,
        dedup_key: str,
        *,
        kind: str = DEGRADATION,
        alert_ids: Sequence[str] = (),
    ) -> bool:
        """Open the incident of ``model_id`` and ``kind`` under ``dedup_key``, unless every
        one of ``alert_ids`` (the page's alerts) opened it before. True when opened."""
        opened = await self._open(
            keys=[
                self.incident_key(model_id, kind),
                *(self.key("opened", alert_id) for alert_id in alert_ids),
            ],
            args=[dedup_key, self.ttl_ms],
        )
        return bool(int(opened))

    async def open_incident_key(self, model_id: str, kind: str = DEGRADATION) -> str | None:
        """The dedup key of the open incident of ``model_id`` and ``kind``, if any."""
        return _text(await self.redis.get(self.incident_key(model_id, kind))) or None

    async def schedule_escalation(self, alert_id: str, due: float) -> None:
        await self.redis.zadd(self.key("escalations"), {alert_id: int(due * 1000)}, nx=True)

    async def due_escalations(self) -> list[str]:
        """Escalations due now. They stay scheduled until :meth:`escalation_done`, so a
        crash mid-escalation leaves them to the next tick; delivery claims keep replicas
        from sending them twice."""
        due = await self.redis.zrangebyscore(self.key("escalations"), "-inf", self.now_ms())
        return [_text(raw) for raw in due]

    async def escalation_done(self, alert_id: str) -> None:
        await self.redis.zrem(self.key("escalations"), alert_id)

    async def next_escalation(self) -> float | None:
        first = await self.redis.zrange(self.key("escalations"), 0, 0, withscores=True)
        return float(first[0][1]) / 1000 if first else None

    # --- summary windows: dead letters, orphans, held-back pages ---------------------------

    async def record_in_window(
        self,
        family: str,
        item: str,
        fields: Sequence[str],
        *,
        window_s: float,
        scope: str = "",
        sample: str = "",
        sample_max: int = 0,
    ) -> bool:
        """Count ``item`` once in the ``family`` window it falls in (a crash that makes
        the caller record it again does not count it twice): each of ``fields`` is
        incremented, and ``sample`` is kept by name while the window has fewer than
        ``sample_max``. True when it was counted now."""
        width = int(window_s * 1000)
        start = self.now_ms() // width * width
        while True:
            window = Window(family, start, scope)
            counted = int(
                await self._record_in_window(
                    keys=[
                        self.key(f"{family}-seen", item),
                        self.key(family, window.id),
                        self.key(f"{family}-closed", window.id),
                        self.key(f"{family}-windows"),
                        self.key(f"{family}-sample", window.id),
                    ],
                    args=[self.ttl_ms, window.id, start + width, sample, sample_max, *fields],
                )
            )
            if counted >= 0:
                return counted == 1
            start += width  # its summary is already out: into the next window

    async def due_windows(self, family: str) -> list[Window]:
        """Windows of ``family`` that have ended with items not yet summarised."""
        due = await self.redis.zrangebyscore(self.key(f"{family}-windows"), "-inf", self.now_ms())
        return [Window.parse(family, _text(raw)) for raw in due]

    async def close_window(self, window: Window) -> WindowCounts:
        """The window's counts and sample, frozen: later items count in a later window, so
        every replica that reads them sends the same summary."""
        raw_counts, raw_sample = await self._close_window(
            keys=[
                self.key(f"{window.family}-closed", window.id),
                self.key(window.family, window.id),
                self.key(f"{window.family}-sample", window.id),
            ],
            args=[self.ttl_ms],
        )
        pairs = [_text(v) for v in raw_counts]
        counts = {pairs[i]: int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
        named = [_text(v) for v in raw_sample]
        order = sorted(range(0, len(named), 2), key=lambda i: int(named[i + 1]))
        return WindowCounts(counts, tuple(named[i] for i in order))

    async def window_done(self, window: Window) -> bool:
        """Whether this call retired the window (False: another replica did first)."""
        return bool(await self.redis.zrem(self.key(f"{window.family}-windows"), window.id))

    # the fallback's summary of dead letters (family "dead")

    async def record_dead_letter(
        self, delivery: str, channel_key: str, fields: Sequence[str], *, window_s: float
    ) -> bool:
        """Count a dead-lettered (alert, channel) in the summary window it falls in, once
        (a page dead-lettered again after a crash is not counted twice)."""
        return await self.record_in_window(
            "dead", f"{delivery}:{channel_key}", fields, window_s=window_s
        )

    async def due_dead_letter_windows(self) -> list[int]:
        """Starts (ms) of windows that have ended with dead letters not yet summarised."""
        return [w.start_ms for w in await self.due_windows("dead")]

    async def close_dead_letter_window(self, start_ms: int) -> dict[str, int]:
        return (await self.close_window(Window("dead", start_ms))).counts

    async def dead_letter_window_done(self, start_ms: int) -> None:
        await self.window_done(Window("dead", start_ms))

    # --- per-channel rate limit ---------------------------------------------------------

    async def take_page_slot(self, channel_key: str, *, per_minute: int) -> bool:
        """One page to ``channel_key`` in this clock minute, if fewer than ``per_minute``
        were sent in it (by any replica); False: hold the page back."""
        start = self.now_ms() // 60_000 * 60_000
        taken = await self._take_slot(
            keys=[self.key("rate", channel_key, str(start))], args=[120_000]
        )
        return int(taken) <= per_minute

    async def remember_channel(self, channel_key: str, spec: str) -> None:
        """Where a held-back summary for ``channel_key`` goes (the spec holds secrets, as
        the owner registry does)."""
        await self.redis.set(self.key("held-channel", channel_key), spec, px=self.ttl_ms)

    async def channel_spec(self, channel_key: str) -> str | None:
        return _text(await self.redis.get(self.key("held-channel", channel_key))) or None

    # --- counters -----------------------------------------------------------------------

    async def count(self, **deltas: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for name, value in deltas.items():
            if value:
                pipe.hincrby(self.key("stats"), name, value)
        await pipe.execute()

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.key("stats"))
        return {_text(k): int(v) for k, v in raw.items()}


def _parse_pending(value: str) -> tuple[str, int, str, int] | None:
    """``pending|token|deadline_ms|page|redeliveries`` (token, deadline, page,
    redeliveries), or None for a finished claim. A claim written before pages were
    recorded (three parts) is in doubt with an unknown page."""
    parts = value.split("|")
    if parts[0] != "pending":
        return None
    if len(parts) == 3:
        return parts[1], int(parts[2]), UNKNOWN_PAGE, 0
    return parts[1], int(parts[2]), parts[3], int(parts[4])


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
