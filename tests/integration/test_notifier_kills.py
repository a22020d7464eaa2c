"""No page lost when a notifier dies: two notifier replicas (real processes, one consumer
group) page owners over webhook, Slack, PagerDuty and email on real loopback receivers,
and one of them is SIGKILLed at least 20 times, each time while it has a request of its
own open at a receiver. Every alert must reach every channel of its owner; duplicates are
allowed only where the receiver cannot deduplicate them (Slack, email) and must be
marked there; a channel that refuses every page has its pages dead-lettered and
summarised, once per window, to the fallback channel."""

from __future__ import annotations

import asyncio
import email.policy
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller
from receivers import HttpReceiver, free_port
from redis.asyncio import Redis

from detectors.base import Change
from streams.contract.alerts import build_alert
from streams.contract.notification import Channel, parse_channel
from streams.dev.embedded import EmbeddedBroker
from streams.dev.process import WorkerProcess
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import PagingStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = int(os.environ.get("WATCHKEEPER_KILL_SEED", "13"))
KILLS = 20  # each one while the victim has a request of its own open at a receiver
MODELS = 24
BROKEN = "model-broken"  # its only channel answers 400: dead letters, and a summary
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
RECEIVER_DELAY_S = 0.15  # receivers answer slowly, so kills land mid-request
SUMMARY_WINDOW_S = 3.0
LEASE_S = 2.0
MARK = "[possible duplicate]"
RESENT = re.compile(r"re-sending page (\w+) to (\w+): .*\(re-send (\d+)\)")


# --------------------------------------------------------------------------- receivers


class TrackingHttp(HttpReceiver):
    """The test suite's HTTP receiver, also knowing the client ports of open requests."""

    def __init__(self) -> None:
        super().__init__(delay_s=RECEIVER_DELAY_S)
        self.open_ports: Counter[int] = Counter()

    async def _handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        port = int(peer[1]) if peer else 0
        self.open_ports[port] += 1
        try:
            return await super()._handle(request)
        finally:
            self.open_ports[port] -= 1
            if self.open_ports[port] <= 0:
                del self.open_ports[port]


@dataclass
class Mail:
    message: EmailMessage
    peer_port: int


class SlowMailbox:
    """aiosmtpd handler: accepts every message after a delay, tracking open DATA ports."""

    def __init__(self) -> None:
        self.received: list[Mail] = []
        self.open_ports: Counter[int] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        port = int(session.peer[1])
        self.open_ports[port] += 1
        try:
            await asyncio.sleep(RECEIVER_DELAY_S)
            message = message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Mail(message, port))
            return "250 Message accepted"
        finally:
            self.open_ports[port] -= 1
            if self.open_ports[port] <= 0:
                del self.open_ports[port]


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds (from /proc)."""
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def owners_of_ports(ports: set[int], pids: list[int]) -> dict[int, set[int]]:
    """For each pid, which of these local TCP ports (IPv4: the receivers are on
    127.0.0.1) belong to its sockets."""
    if not ports:
        return {}
    wanted = {f"{port:04X}": port for port in ports}
    inode_port: dict[str, int] = {}
    with open("/proc/net/tcp") as rows:
        for row in rows:
            fields = row.split()
            port = wanted.get(fields[1].rpartition(":")[2])
            if port is not None and fields[9] != "0":
                inode_port[fields[9]] = port
    return {pid: {inode_port[i] for i in socket_inodes(pid) if i in inode_port} for pid in pids}


# --------------------------------------------------------------------------- alerts


def make_alert(model: str, index: int) -> dict[str, Any]:
    change = Change(
        detector="adwin" if index % 2 else "page_hinkley",
        direction="increase",
        index=index,
        event_time_ms=1_763_700_000_000 + index * 1000,
        mean_before=0.05,
        n_before=500,
        mean_after=0.2,
        n_after=200,
    )
    return build_alert(
        change,
        model_id=model,
        model_version="1",
        detected_at=datetime.now(tz=UTC),
        config_fingerprint="cfg",
    )


def ids_in_slack(body: dict[str, Any]) -> list[str]:
    (context,) = [b for b in body["blocks"] if b["type"] == "context"]
    return re.findall(r"`([^`]+)`", context["elements"][0]["text"])


def ids_in_mail(message: EmailMessage) -> list[str]:
    body = message.get_content()
    assert isinstance(body, str)
    return re.findall(r"alert id:\s+(\S+)", body)


@dataclass
class Copy:
    """One page as a receiver got it: its alerts, its page id (None: the channel has
    none to deduplicate on) and whether it was marked a possible duplicate."""

    alert_ids: list[str]
    page_id: str | None
    marked: bool


def received(http: TrackingHttp, mailbox: SlowMailbox) -> dict[str, list[Copy]]:
    copies: dict[str, list[Copy]] = {"webhook": [], "slack": [], "pagerduty": [], "email": []}
    for r in http.at("/hook"):
        body = r.json()
        ids = [body["alert_id"], *(g["alert_id"] for g in body["grouped_alerts"])]
        marked = r.headers.get("X-Watchkeeper-Possible-Duplicate") == "true"
        copies["webhook"].append(Copy(ids, r.headers["X-Watchkeeper-Delivery"], marked))
    for r in http.at("/slack"):
        body = r.json()
        marked = body["text"].startswith(MARK)
        copies["slack"].append(Copy(ids_in_slack(body), None, marked))
    for r in http.at("/pagerduty"):
        event = r.json()
        ids = event["payload"]["custom_details"]["alert_ids"]
        copies["pagerduty"].append(Copy(ids, event["dedup_key"], False))
    for mail in mailbox.received:
        m = mail.message
        marked = MARK in str(m["Subject"]) and m["X-Watchkeeper-Possible-Duplicate"] == "yes"
        copies["email"].append(Copy(ids_in_mail(m), None, marked))
    return copies


# --------------------------------------------------------------------------- the test


@pytest.mark.separate  # 40 s of kills: with the other soaks, in .ci/run's own step
async def test_no_page_is_lost_through_twenty_sigkills_of_two_notifier_replicas(
    embedded_broker: EmbeddedBroker,
    redis_url: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    http = await TrackingHttp().start()
    mailbox = SlowMailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    alerts_topic, dlq_topic = make_topic("alerts", 4), make_topic("notify-dlq", 1)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    redis = Redis.from_url(redis_url)
    store = PagingStore(redis, prefix, clock=time.time)
    registry = OwnerRegistry(redis, prefix)
    channels = (
        parse_channel(f"webhook:{http.url}/hook"),
        parse_channel(f"slack:{http.url}/slack"),
        parse_channel(f"pagerduty:{ROUTING_KEY}"),
        parse_channel("email:oncall@example.com"),
    )
    broken = parse_channel(f"webhook:{http.url}/broken")
    models = [f"model-{m:02d}" for m in range(MODELS)]

    def owner(model: str, where: tuple[Channel, ...]) -> Owner:
        return Owner(
            model_id=model,
            owner="team",
            channels=where,
            runbook="https://runbooks.example.com/x",
            updated_at_ms=int(time.time() * 1000),
        )

    for model in models:
        await registry.set(owner(model, channels))
    await registry.set(owner(BROKEN, (broken,)))
    http.answer("/broken", *([400] * 10_000))
    env = {
        "WATCHKEEPER_TOPIC_ALERTS": alerts_topic,
        "WATCHKEEPER_TOPIC_DLQ": dlq_topic,
        "WATCHKEEPER_REDIS_PREFIX": prefix,
        "WATCHKEEPER_SESSION_TIMEOUT_S": "2",
        "WATCHKEEPER_HEARTBEAT_INTERVAL_S": "0.3",
        "WATCHKEEPER_REBALANCE_TIMEOUT_S": "3",
        "WATCHKEEPER_NOTIFY_GROUP_ID": f"notifier-{uuid.uuid4().hex[:6]}",
        "WATCHKEEPER_NOTIFY_GROUP_WAIT_S": "0.05",
        "WATCHKEEPER_NOTIFY_COOLDOWN_S": "0",
        "WATCHKEEPER_NOTIFY_DELIVERY_LEASE_S": str(LEASE_S),
        # kills land on re-sends too, far more often than crashes would: no cap here (the
        # default, 3, dead-letters a page that keeps killing its notifiers)
        "WATCHKEEPER_NOTIFY_REDELIVER_MAX": "1000",
        "WATCHKEEPER_NOTIFY_REQUEST_TIMEOUT_S": "1.5",
        "WATCHKEEPER_NOTIFY_BACKOFF_BASE_S": "0.05",
        "WATCHKEEPER_NOTIFY_BACKOFF_MAX_S": "0.5",
        "WATCHKEEPER_NOTIFY_PAGERDUTY_URL": f"{http.url}/pagerduty",
        "WATCHKEEPER_NOTIFY_SMTP_PORT": str(smtp.port),
        "WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS": f'["webhook:{http.url}/fallback"]',
        "WATCHKEEPER_NOTIFY_DEAD_LETTER_SUMMARY_S": str(SUMMARY_WINDOW_S),
        # the receivers are on loopback (the outbound policy refuses it unless allowed), and
        # this test counts every page: no rate limit
        "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS": '["127.0.0.1"]',
        "WATCHKEEPER_NOTIFY_MAX_PAGES_PER_CHANNEL_PER_MIN": "0",
        "WATCHKEEPER_LOG_LEVEL": "warn",
    }
    started = 0

    def notifier() -> WorkerProcess:
        nonlocal started
        started += 1
        return WorkerProcess(
            embedded_broker.url,
            redis_url,
            tmp_path / f"notifier-{started}.log",
            env=env,
            command="notify",
        ).start()

    alerts: list[dict[str, Any]] = []
    publishing = True

    async def publish() -> None:
        """Alerts keep coming while the replicas are killed: a wave every 0.3 s."""
        producer = AIOKafkaProducer(bootstrap_servers=embedded_broker.bootstrap, acks="all")
        await producer.start()
        index = 0
        try:
            while publishing:
                for _ in range(5):
                    index += 1
                    model = BROKEN if index % 25 == 0 else rng.choice(models)
                    alert = make_alert(model, index)
                    alerts.append(alert)
                    value = orjson.dumps(alert)
                    await producer.send(alerts_topic, key=model.encode(), value=value)
                await producer.flush()
                await asyncio.sleep(0.3)
        finally:
            await producer.stop()

    def open_ports() -> set[int]:
        return set(http.open_ports) | set(mailbox.open_ports)

    replicas = [notifier(), notifier()]
    everything: list[WorkerProcess] = list(replicas)
    kills: list[int] = []  # connections the victim had open at a receiver when killed
    publisher = asyncio.create_task(publish())
    try:
        deadline = time.monotonic() + 120
        while len(kills) < KILLS:
            await asyncio.sleep(rng.uniform(0.2, 1.2))  # a random moment, then
            while True:  # the first one at which a replica has a request open
                assert time.monotonic() < deadline, f"only {len(kills)} kills mid-request"
                assert all(p.alive() for p in replicas), [p.log_tail() for p in replicas]
                pids = [p.proc.pid for p in replicas if p.proc]
                owners = owners_of_ports(open_ports(), pids)
                busy = [(i, owners[pid]) for i, pid in enumerate(pids) if owners.get(pid)]
                if busy:
                    break
                await asyncio.sleep(0.02)
            i, hits = rng.choice(busy)
            await asyncio.to_thread(replicas[i].kill)
            kills.append(len(hits))
            replicas[i] = notifier()
            everything.append(replicas[i])
        killing_s = time.monotonic() - began
        publishing = False
        await publisher

        # every (alert, channel) delivery reaches a final state, every summary is out
        keys = [
            store.key("sent", a["alert_id"], ch.key)
            for a in alerts
            for ch in ((broken,) if a["model_id"] == BROKEN else channels)
        ]
        deadline = time.monotonic() + 60
        while True:
            states = [s.decode() if s else "" for s in await redis.mget(keys)]
            pending = sum(not s or s.startswith("pending") for s in states)
            windows = await redis.zcard(store.key("dead-windows"))
            if pending == 0 and windows == 0:
                break
            assert time.monotonic() < deadline, (
                f"{pending} deliveries and {windows} summaries unfinished\n"
                + "\n".join(p.log_tail(10) for p in replicas)
            )
            await asyncio.sleep(0.1)
    finally:
        publishing = False
        await publisher
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in everything))
        smtp.stop()
        await http.stop()
    took_s = time.monotonic() - began
    stats = await store.stats()
    dead = await read_all(embedded_broker.bootstrap, dlq_topic)
    await redis.aclose()

    owned = [a["alert_id"] for a in alerts if a["model_id"] != BROKEN]
    lost = [a["alert_id"] for a in alerts if a["model_id"] == BROKEN]
    resends: dict[tuple[str, str], int] = {}  # (page, channel kind) -> times re-sent
    for log in tmp_path.glob("notifier-*.log"):
        for page, kind, n in RESENT.findall(log.read_text()):
            resends[page, kind] = max(resends.get((page, kind), 0), int(n))
    assert len(kills) >= KILLS and all(n > 0 for n in kills)
    assert Counter(s.partition("|")[0] for s in states) == {
        "sent": 4 * len(owned),
        "dlq": len(lost),
    }

    copies = received(http, mailbox)
    report = [
        f"{len(alerts)} alerts ({len(owned)} to 4 channels each, {len(lost)} to a channel "
        f"answering 400); {len(kills)} SIGKILLs, each with the victim holding open "
        f"connections to the receivers ({sum(kills)} in all); {started} notifier processes; "
        f"{took_s:.1f}s ({killing_s:.1f}s killing)"
    ]
    for kind, pages in copies.items():
        per_alert = Counter(i for c in pages for i in c.alert_ids)
        unmarked = Counter(i for c in pages if not c.marked for i in c.alert_ids)
        marked = sum(len(c.alert_ids) for c in pages if c.marked)
        duplicates = sum(n - 1 for n in per_alert.values())
        # every alert reaches its channel
        assert set(per_alert) == set(owned), f"{kind}: missing {set(owned) - set(per_alert)}"
        if kind != "pagerduty":  # PagerDuty gets the same event again: it has the dedup_key
            assert [i for i, n in unmarked.items() if n > 1] == [], f"{kind}: unmarked duplicate"
        line = (
            f"{kind:9} requests {len(pages):4}  alert deliveries {sum(per_alert.values()):4}  "
            f"duplicates {duplicates:3}  marked {marked:3}"
        )
        if kind in ("webhook", "pagerduty"):
            # the receiver deduplicates on the page id: each alert is in exactly one page
            page_ids = defaultdict(set)
            for c in pages:
                page_ids[c.page_id].update(c.alert_ids)
            in_pages = Counter(i for ids in page_ids.values() for i in ids)
            assert [i for i, n in in_pages.items() if n > 1] == [], f"{kind}: two page ids"
            line += f"  distinct pages {len(page_ids):4}  duplicates after dedup 0"
        else:
            assert duplicates <= marked, f"{kind}: a duplicate was not marked"
        report.append(line)

    # dead letters: only the broken channel's, each counted once in one summary
    assert {d["reason"] for d in dead} == {"delivery_failed"}
    assert {d["alert"]["alert_id"] for d in dead} == set(lost)
    summaries: dict[str, dict[str, Any]] = {}
    for r in http.at("/fallback"):
        summaries[r.headers["X-Watchkeeper-Delivery"]] = r.json()
    windows = Counter(s["alert_id"] for s in summaries.values())
    assert all(n == 1 for n in windows.values()), "two summaries for one window"
    totals = [s["notification_details"]["dead_letters"]["total"] for s in summaries.values()]
    assert sum(totals) == len(lost)
    report.append(
        f"dead-lettered {len(lost)} alerts (DLQ records {len(dead)}), fallback summaries "
        f"{len(summaries)} (requests {len(http.at('/fallback'))}) with totals {sorted(totals)}"
    )
    report.append(
        "notifier counters: "
        + ", ".join(
            f"{k} {stats.get(k, 0)}"
            for k in (
                "in_doubt",
                "redelivered_pages",
                "redelivered",
                "reclaimed",
                "duplicate",
                "lease_lost",
            )
        )
    )
    report.append(
        f"{len(resends)} pages re-sent after a kill; by times re-sent: "
        + ", ".join(f"{n}x {count}" for n, count in sorted(Counter(resends.values()).items()))
    )
    assert stats.get("redelivered_pages", 0) >= len(resends) > 0
    print("\n" + "\n".join(report))


async def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic``, read to its end offsets."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            found += [orjson.loads(m.value) for ms in batch.values() for m in ms]
            parts = list(consumer.assignment())
            if parts:
                ends = await consumer.end_offsets(parts)
                behind = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
                if not behind:
                    return found
            assert time.monotonic() < deadline, "the dead-letter topic was not read to its end"
    finally:
        await consumer.stop()
