"""Paging state in Redis, shared by every notifier replica and by the ``ack``/``silence``
commands: what was decided for each alert, which deliveries are claimed or done, acks,
silences, cooldowns and pending escalations.

Times are read from the caller's clock and stored in the values (Redis TTLs only clean
up), so that tests can move time instead of sleeping through it. Every decision that two
replicas could race on is one Lua script or one ``SET NX``.

Keys (``prefix`` defaults to ``wk:``), all under ``{prefix}notify:``:
    decision:{alert_id}            deliver | silenced | acknowledged | cooldown (first call wins)
    cooldown:{model}:{kind}        "{until_ms}:{severity rank}:{group}" of the last page
    sent:{delivery}:{channel}      pending|token|deadline_ms, sent|ms, dlq|reason, in_doubt|
                                   (delivery = alert_id, or alert_id:escalation)
    alert:{alert_id}               the alert as delivered (for ack and escalation)
    ack:{alert_id}                 who acknowledged, when
    ack-kind:{model}:{kind}        until_ms: an ack stops repeats of its model and kind
    silence:{model}                until_ms; silence-info:{model} holds who and why
    open:{model}                   dedup key of the open degradation incident (for resolve)
    escalations                    zset alert_id -> due_ms
    stats                          hash of counters (delivered, suppressed_*, dlq, ...)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from redis.asyncio import Redis

__all__ = ["Claim", "Clock", "PagingStore", "Silence"]

Clock = Callable[[], float]  # seconds since the epoch
Decision = Literal["deliver", "silenced", "acknowledged", "cooldown"]
ClaimState = Literal["claimed", "done", "busy", "in_doubt"]

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

    async def decide_resolve(self, alert: dict[str, Any]) -> str | None:
        """For an improvement: the dedup key of the open incident it resolves, or None.
        Closing the incident and recording the decision is one step, so exactly one
        replica resolves it and a redelivered alert resolves the same incident."""
        result = _text(
            await self._resolve(
                keys=[self.key("decision", alert["alert_id"]), self.key("open", alert["model_id"])],
                args=[self.ttl_ms],
            )
        )
        state, _, dedup_key = result.partition("|")
        return dedup_key if state == "resolve" else None

    # --- delivery claims ---------------------------------------------------------------

    def _sent_key(self, delivery: str, channel_key: str) -> str:
        return self.key("sent", delivery, channel_key)

    async def claim(self, delivery: str, channel_key: str, *, lease_s: float) -> Claim:
        """Claim the delivery of one alert to one channel, at most once across replicas.

        A claim whose holder missed its deadline (killed mid-request) is *in doubt*: the
        receiver may or may not have it. Exactly one caller gets ``in_doubt`` and must
        dead-letter it; re-sending could page twice."""
        key = self._sent_key(delivery, channel_key)
        now = self.now_ms()
        value = f"pending|{self.token}|{now + int(lease_s * 1000)}"
        if await self.redis.set(key, value, nx=True, px=self.ttl_ms):
            return Claim("claimed", key, value)
        current = _text(await self.redis.get(key))
        if not current:  # expired between the two calls: try once more
            return await self.claim(delivery, channel_key, lease_s=lease_s)
        state, _, rest = current.partition("|")
        if state != "pending":
            return Claim("done", key, current)
        _token, _, deadline = rest.partition("|")
        if int(deadline) > now:
            return Claim("busy", key, current, retry_at=int(deadline) / 1000)
        if await self._cas(keys=[key], args=[current, "in_doubt|", self.ttl_ms]):
            return Claim("in_doubt", key, current)
        return Claim("done", key, current)

    async def finish(self, claim: Claim, outcome: str) -> bool:
        """Record ``sent|…`` or ``dlq|reason`` if the claim is still ours."""
        return bool(await self._cas(keys=[claim.key], args=[claim.value, outcome, self.ttl_ms]))

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

    async def ack(self, alert: dict[str, Any], *, by: str, ack_ttl_s: float) -> None:
        now = self.now_ms()
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(
            self.key("ack", alert["alert_id"]),
            orjson.dumps({"by": by, "at_ms": now}),
            px=self.ttl_ms,
        )
        pipe.set(
            self.key("ack-kind", alert["model_id"], alert["kind"]),
            now + int(ack_ttl_s * 1000),
            px=int(ack_ttl_s * 1000) + 60_000,
        )
        pipe.zrem(self.key("escalations"), alert["alert_id"])
        await pipe.execute()

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

    async def open_incident(self, model_id: str, dedup_key: str) -> None:
        await self.redis.set(self.key("open", model_id), dedup_key, px=self.ttl_ms)

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


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
