"""Alert history like amtool's: the alerts topic read from its start, joined with the
notifier's state in Redis (paged, acknowledged by whom, silenced, incident open).

The topic is the record of every alert (the notifier's Redis records expire after
``WATCHKEEPER_NOTIFY_DEDUP_TTL_S``, 7 days); it is read with a consumer outside any group
(nothing committed) from each partition's beginning to the end offsets taken when reading
starts, plus what arrives within a few reads after, so the read ends while workers
publish. An alert published twice (a batch re-processed after a crash publishes the same
alert id again) is listed once, from its first record.

Times: ``since_ms`` and the newest-first order use the alert's ``detected_at`` (the wall
clock of the worker that raised it, part of the alert contract), or the Kafka record's
timestamp when an alert has none. Event time (``event_time``) is when the change happened
in the model's traffic, which for a backfill or a replay is long before it was detected.

What "paged" means: the notifier records each delivery of an alert to a channel under
``notify:sent:{alert_id}[:resolved]:{channel}`` as ``sent|ms`` once the receiver took
it (:mod:`streams.store.paging`). ``paged`` is exact while those records live; the
other outcomes (held back by a rate limit, dead-lettered, summarised as an orphan,
suppressed by a silence, an ack or a cooldown, info only) are in :attr:`AlertEntry.page_state`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.asyncio import Redis

from streams.connections import BROKER_CHECK_S, aiokafka_kwargs, check_broker
from streams.errors import ConfigError, TopologyError, WatchkeeperError
from streams.notify.loop import DEGRADATION, IMPROVEMENT, RESOLVED, parse_alert
from streams.replay.times import parse_time
from streams.settings import Settings
from streams.store.owners import parse_duration
from streams.store.paging import PagingStore

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PAGE_STATES",
    "AlertEntry",
    "AlertLog",
    "Published",
    "alert_history",
    "find_alert",
    "join_paging",
    "page_state",
    "parse_since",
    "read_alerts",
    "resolve_prefix",
    "select",
    "unique",
]

CONNECT_TIMEOUT_S = BROKER_CHECK_S
"""How long to wait for the broker before saying it cannot be reached (aiokafka's own
request timeout is 40 s, and a host that drops packets would hang that long)."""
STALL_TIMEOUT_S = 20.0
"""A read that gets no record for this long while records are still due has failed."""

PAGE_STATES = {
    "paged": "a page reached at least one channel",
    "sending": "being sent (or retried) now",
    "held_back": "held back by the channel's rate limit, counted in that channel's summary page",
    "dead_lettered": "not delivered: dead-lettered (after its retries, or no channel)",
    "summarised": "counted in the fallback's orphaned_models summary page, not paged alone",
    "silenced": "not paged: its model was silenced",
    "acknowledged": "not paged: its model and kind were acknowledged",
    "cooldown": "not paged: a page of its model and kind went out within the cooldown",
    "info": "recorded, not paged (info severity, or a resolve with nothing open)",
    "no_record": "no notifier record: not handled yet (is `watchkeeper notify` running?), "
    "or older than WATCHKEEPER_NOTIFY_DEDUP_TTL_S",
}
"""Every :attr:`AlertEntry.page_state`, with what it means."""


@dataclass(frozen=True)
class AlertEntry:
    """One published alert and what became of it."""

    alert: dict[str, Any]  # as published on the alerts topic
    paged: bool  # the notifier delivered at least one page for it
    acked_by: str | None
    acked_at_ms: int | None
    silenced: bool  # its model is silenced now
    incident_open: bool  # the incident of its (model, kind) is still open
    # added by the alerts command (the fields above are the shared interface):
    page_state: str = "no_record"  # a key of PAGE_STATES
    paged_at_ms: int | None = None  # when the first page reached a channel
    escalated: bool = False  # an escalation page went out for it
    silenced_until_ms: int | None = None
    detected_at_ms: int | None = None  # what --since and the order go by (module docstring)

    @property
    def alert_id(self) -> str:
        return str(self.alert["alert_id"])

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, every field, in declaration order (``alerts --json``)."""
        return {
            "alert": self.alert,
            "paged": self.paged,
            "acked_by": self.acked_by,
            "acked_at_ms": self.acked_at_ms,
            "silenced": self.silenced,
            "incident_open": self.incident_open,
            "page_state": self.page_state,
            "paged_at_ms": self.paged_at_ms,
            "escalated": self.escalated,
            "silenced_until_ms": self.silenced_until_ms,
            "detected_at_ms": self.detected_at_ms,
        }


@dataclass(frozen=True)
class Published:
    """One alert record as read from the topic."""

    alert: dict[str, Any]
    partition: int
    offset: int
    timestamp_ms: int | None  # the Kafka record's

    @property
    def detected_at_ms(self) -> int | None:
        """The alert's ``detected_at``, else the record's timestamp."""
        text = self.alert.get("detected_at")
        if isinstance(text, str):
            try:
                return int(datetime.fromisoformat(text).timestamp() * 1000)
            except ValueError:
                pass
        return self.timestamp_ms


@dataclass(frozen=True)
class AlertLog:
    """The whole topic: its alerts in read order, and how many records were not alerts."""

    topic: str
    alerts: list[Published]
    invalid: int


# --- the topic ----------------------------------------------------------------------------------


async def read_alerts(
    settings: Settings,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    stall_timeout_s: float = STALL_TIMEOUT_S,
) -> AlertLog:
    """Every record of the alerts topic up to its current end. An unreachable broker or a
    missing topic is a :class:`~streams.errors.WatchkeeperError` within
    ``connect_timeout_s``."""
    topic = settings.topics.alerts
    # the message every command gives for a broker that does not answer
    await check_broker(settings.bootstrap_servers, settings.kafka, timeout_s=connect_timeout_s)
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings.bootstrap_servers, settings.kafka),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        try:
            await asyncio.wait_for(consumer.start(), connect_timeout_s)
            tps = await asyncio.wait_for(_partitions(consumer, topic), connect_timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            why = (
                f"no answer within {connect_timeout_s:g} s"
                if isinstance(exc, TimeoutError)
                else (str(exc) or type(exc).__name__)
            )
            raise WatchkeeperError(
                f"cannot reach the broker at {settings.broker}: {why} (set --broker or "
                "WATCHKEEPER_BROKER)"
            ) from exc
        if not tps:
            raise TopologyError(
                f"topic {topic} not found on the broker at {settings.broker}: no worker has "
                "created it yet, or WATCHKEEPER_TOPIC_ALERTS names another topic"
            )
        try:
            return await _read(consumer, topic, tps, stall_timeout_s)
        except KafkaError as exc:
            raise WatchkeeperError(f"reading {topic} from {settings.broker} failed: {exc}") from exc
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    if topic not in await consumer.topics():
        return []
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def _read(
    consumer: AIOKafkaConsumer, topic: str, tps: list[TopicPartition], stall_timeout_s: float
) -> AlertLog:
    """Each partition until its position has reached the end offset taken at the start
    and a read gives it nothing more. Records past that offset are kept: tansu reports
    the base offset of the last record batch + 1 as the end, not the true end (a batch
    of three at offsets 3-5 reads as end 4), and a fetch returns whole batches."""
    consumer.assign(tps)
    starts = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, starts[tp])
    done = {tp for tp in tps if starts[tp] >= ends[tp]}
    if done:
        consumer.pause(*done)
    alerts: list[Published] = []
    invalid = 0
    past_end: dict[TopicPartition, int] = {}  # reads since the partition reached its end
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while len(done) < len(tps):
        batch = await consumer.getmany(timeout_ms=300, max_records=5000)
        for tp, records in batch.items():
            for rec in records:
                alert, _why = parse_alert(rec.value or b"")
                if alert is None:
                    invalid += 1
                    continue
                stamp = rec.timestamp if rec.timestamp is not None and rec.timestamp > 0 else None
                alerts.append(Published(alert, tp.partition, rec.offset, stamp))
        if batch:
            last_progress = loop.time()
        for tp in set(tps) - done:
            # compacted or transactional topics leave gaps: the position tells, not counts
            if await consumer.position(tp) >= ends[tp]:
                reads = past_end.get(tp, 0)
                # what is published while this runs is read too, for a few reads at most
                if not batch.get(tp) or reads >= _READS_PAST_END:
                    done.add(tp)
                    consumer.pause(tp)
                past_end[tp] = reads + 1
        if len(done) < len(tps) and loop.time() - last_progress > stall_timeout_s:
            behind = sorted(tp.partition for tp in set(tps) - done)
            raise WatchkeeperError(
                f"reading {topic} stalled: no record for {stall_timeout_s:g} s from "
                f"partition(s) {behind} before their end"
            )
    return AlertLog(topic, alerts, invalid)


_READS_PAST_END = 3


def _key(p: Published) -> tuple[str, str]:
    return str(p.alert["alert_id"]), str(p.alert.get("status", "firing"))


def unique(published: Iterable[Published]) -> list[Published]:
    """Each alert once (by id and status), from its first record."""
    seen: dict[tuple[str, str], Published] = {}
    for p in published:
        seen.setdefault(_key(p), p)
    return list(seen.values())


def select(
    published: Iterable[Published],
    *,
    model: str | None = None,
    kind: str | None = None,
    since_ms: int | None = None,
) -> list[Published]:
    """Each alert once, of ``model`` and ``kind``, detected at or after ``since_ms``,
    newest first (by detection time, then event time, then id)."""
    chosen = [
        p
        for p in unique(published)
        if (model is None or p.alert["model_id"] == model)
        and (kind is None or p.alert["kind"] == kind)
        and (since_ms is None or (p.detected_at_ms or 0) >= since_ms)
    ]

    def newest(p: Published) -> tuple[int, int, str]:
        at = p.alert.get("event_time_ms")
        return (p.detected_at_ms or 0, at if isinstance(at, int) else 0, str(p.alert["alert_id"]))

    return sorted(chosen, key=newest, reverse=True)


def parse_since(text: str, now_ms: int) -> int:
    """``--since``: a duration back from now (``7d``, ``12h``, ``30m``, ``1h30m``; a unit is
    required) or a time (RFC 3339 such as ``2026-11-19T00:00Z``, or epoch ms), as epoch ms."""
    compact = text.strip()
    if compact and compact[-1].lower() in "dhms" and compact[0].isdigit():
        try:
            return now_ms - int(parse_duration(compact) * 1000)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from exc
    try:
        return parse_time(compact)
    except ConfigError as exc:
        raise ConfigError(
            f"--since {text!r}: expected a duration such as 7d, 12h, 30m, or a time such as "
            "2026-11-19T00:00Z"
        ) from exc


# --- the notifier's records ---------------------------------------------------------------------


def page_state(
    deliveries: Sequence[str], decision: str | None, *, summarised: bool, remembered: bool
) -> str:
    """What became of an alert's page, from the notifier's records: its own deliveries'
    states (``sent|ms``, ``pending|…``, ``held|ms``, ``dlq|reason``), its decision
    (``deliver``, ``silenced``, ``acknowledged``, ``cooldown``; ``info`` or ``resolve|key``
    for a resolving alert), whether it was counted in an orphan summary, and whether the
    notifier remembered it (info alerts are remembered and nothing else). The best
    outcome wins: a page that reached one channel of two is ``paged``."""
    states = {d.partition("|")[0] for d in deliveries}
    for state, name in (
        ("sent", "paged"),
        ("pending", "sending"),
        ("held", "held_back"),
        ("dlq", "dead_lettered"),
    ):
        if state in states:
            return name
    if summarised:
        return "summarised"
    if decision in ("silenced", "acknowledged", "cooldown", "info"):
        return decision
    if decision is not None:  # deliver / resolve|key, not claimed yet
        return "sending"
    return "info" if remembered else "no_record"


def _suffix(alert: dict[str, Any]) -> str:
    """As the notifier keys a resolved alert's decision and deliveries (streams.notify.loop)."""
    return RESOLVED if alert.get("status") == "resolved" else ""


def _incident_kind(alert: dict[str, Any]) -> str:
    """The incident an alert opens or closes (an improvement: the degradation's)."""
    return DEGRADATION if alert["kind"] == IMPROVEMENT else str(alert["kind"])


def _glob(text: str) -> str:
    """``text`` literal in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def join_paging(
    redis: Redis,
    settings: Settings,
    published: Sequence[Published],
    *,
    now_ms: int | None = None,
) -> list[AlertEntry]:
    """The notifier's state of each alert, in the order given. One SCAN over the delivery
    records (their channel keys are not derivable from the alert), then one pipeline."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if not published:
        return []
    store = PagingStore(redis, settings.redis_prefix, clock=lambda: now / 1000)
    own = {p.alert["alert_id"] + _suffix(p.alert): i for i, p in enumerate(published)}
    escalation = {p.alert["alert_id"] + ":escalation": i for i, p in enumerate(published)}
    delivery_keys: list[tuple[str, int, bool]] = []  # key, alert index, own (not escalation)
    sent_prefix = store.key("sent", "")
    async for raw in redis.scan_iter(match=_glob(sent_prefix) + "*", count=1000):
        key = _text(raw)
        delivery = key.removeprefix(sent_prefix).rpartition(":")[0]
        if delivery in own:
            delivery_keys.append((key, own[delivery], True))
        elif delivery in escalation:
            delivery_keys.append((key, escalation[delivery], False))
    states: list[list[str]] = [[] for _ in published]
    escalated = [False] * len(published)
    for start in range(0, len(delivery_keys), 1000):
        chunk = delivery_keys[start : start + 1000]
        values = await redis.mget([k for k, _, _ in chunk])
        for (_, i, is_own), value in zip(chunk, values, strict=True):
            if value is None:
                continue
            if is_own:
                states[i].append(_text(value))
            elif _text(value).startswith("sent|"):
                escalated[i] = True

    models = sorted({str(p.alert["model_id"]) for p in published})
    incidents = sorted({(str(p.alert["model_id"]), _incident_kind(p.alert)) for p in published})
    pipe = redis.pipeline(transaction=False)
    for p in published:
        alert_id = p.alert["alert_id"]
        pipe.get(store.key("decision", alert_id + _suffix(p.alert)))
        pipe.get(store.key("ack", alert_id))
        pipe.exists(store.key("orphans-seen", alert_id))
        pipe.exists(store.key("alert", alert_id))
    for model in models:
        pipe.get(store.key("silence", model))
    for model, kind in incidents:
        pipe.exists(store.incident_key(model, kind))
    replies = await pipe.execute()
    per_alert, rest = replies[: 4 * len(published)], replies[4 * len(published) :]
    silences = {m: _int(v) for m, v in zip(models, rest[: len(models)], strict=True)}
    open_now = {i for i, n in zip(incidents, rest[len(models) :], strict=True) if n}

    entries = []
    for i, p in enumerate(published):
        decision, ack, summarised, remembered = per_alert[4 * i : 4 * i + 4]
        record = orjson.loads(ack) if ack is not None else None
        sent = [at for s in states[i] if (at := _sent_ms(s)) is not None]
        until = silences.get(str(p.alert["model_id"]))
        silenced_until = until if until is not None and until > now else None
        entries.append(
            AlertEntry(
                alert=p.alert,
                paged=bool(sent),
                acked_by=None if record is None else str(record.get("by")),
                acked_at_ms=None if record is None else _int(record.get("at_ms")),
                silenced=silenced_until is not None,
                incident_open=(str(p.alert["model_id"]), _incident_kind(p.alert)) in open_now,
                page_state=page_state(
                    states[i],
                    None if decision is None else _text(decision),
                    summarised=bool(summarised),
                    remembered=bool(remembered),
                ),
                paged_at_ms=min(sent) if sent else None,
                escalated=escalated[i],
                silenced_until_ms=silenced_until,
                detected_at_ms=p.detected_at_ms,
            )
        )
    return entries


# --- the two questions ----------------------------------------------------------------------------


async def alert_history(
    settings: Settings,
    redis: Redis,
    *,
    model: str | None = None,
    kind: str | None = None,
    since_ms: int | None = None,
) -> list[AlertEntry]:
    """Alerts newest first, filtered by model, kind and detection time."""
    log = await read_alerts(settings)
    chosen = select(log.alerts, model=model, kind=kind, since_ms=since_ms)
    return await join_paging(redis, settings, chosen)


def resolve_prefix(candidates: dict[str, str], wanted: str) -> str:
    """The one id in ``candidates`` (id -> a short description) that starts with
    ``wanted`` (case aside); :class:`~streams.errors.ConfigError` naming the prefix if
    none, listing the candidates if several."""
    if wanted in candidates:
        return wanted
    found = sorted(i for i in candidates if i.lower().startswith(wanted.lower()))
    if not found:
        raise ConfigError(
            f"no alert with id or prefix {wanted!r} on the alerts topic or in the notifier's "
            "records"
        )
    if len(found) > 1:
        shown = ", ".join(f"{i} ({candidates[i]})" for i in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        raise ConfigError(
            f"alert id prefix {wanted!r} is ambiguous, {len(found)} alerts match: {shown}{more}; "
            "give more characters"
        )
    return found[0]


async def find_alert(settings: Settings, redis: Redis, id_or_prefix: str) -> AlertEntry:
    """The alert with this id or unique id prefix; WatchkeeperError if none or several."""
    wanted = id_or_prefix.strip()
    if not wanted:
        raise ConfigError("give an alert id, or its first characters")
    log = await read_alerts(settings)
    newest_first = select(log.alerts)
    on_topic: dict[str, Published] = {}
    for p in newest_first:  # an id published as firing and as resolved: the newest
        on_topic.setdefault(p.alert["alert_id"], p)
    low = wanted.lower()
    candidates = {i: _described(p.alert) for i, p in on_topic.items() if i.lower().startswith(low)}
    # the notifier's records outlive the topic's retention when that is shorter
    store = PagingStore(redis, settings.redis_prefix, clock=time.time)
    remembered: dict[str, dict[str, Any]] = {}
    if re.fullmatch(r"[0-9a-z_-]+", low):  # nothing a MATCH pattern would read as a glob
        for alert_id in await store.alerts_with_prefix(low, most=11):
            if alert_id not in candidates and (alert := await store.alert(alert_id)) is not None:
                remembered[alert_id] = alert
                candidates[alert_id] = _described(alert)
    chosen = resolve_prefix(candidates, wanted)
    if chosen in on_topic:
        published = on_topic[chosen]
    else:
        published = Published(remembered[chosen], -1, -1, None)
    (entry,) = await join_paging(redis, settings, [published])
    return entry


def _sent_ms(state: str) -> int | None:
    """When a delivery record ``sent|ms`` says the page went out (None: not sent)."""
    name, _, at = state.partition("|")
    return _int(at) if name == "sent" else None


def _described(alert: dict[str, Any]) -> str:
    return f"{alert.get('model_id')} {alert.get('kind')} {alert.get('detected_at', '')}".strip()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(_text(value))
    except ValueError:
        return None
