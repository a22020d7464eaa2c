"""The notifier's policy end to end, in this process, with time under the test's control:
real Redis, real HTTP and SMTP receivers on loopback, dead letters on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from receivers import GarbageServer, HttpReceiver, SmtpReceiver, free_port
from redis.asyncio import Redis

from detectors.base import Change
from streams.cli.main import main as cli
from streams.contract.alerts import build_alert
from streams.contract.notification import parse_channel
from streams.dev.embedded import EmbeddedRedis
from streams.errors import ConfigError
from streams.notify.channels import ChannelSender, verify_signature
from streams.notify.loop import Notifier
from streams.settings import NotifySettings, Settings
from streams.store.orphans import OrphanWatch
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import PagingStore

pytestmark = pytest.mark.integration

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
SECRET = "s3cret"


class Clock:
    """Starts at the real time (the ack/silence commands use real time), moves on demand."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def change(
    index: int,
    *,
    before: float = 0.05,
    after: float = 0.2,
    detector: str = "adwin",
    direction: str = "increase",
) -> Change:
    return Change(
        detector=detector, direction=direction, index=index,
        event_time_ms=1_763_700_000_000 + index * 1000,
        mean_before=before, n_before=800, mean_after=after, n_after=200,
    )  # fmt: skip


def alert(model: str, index: int, **kw: Any) -> dict[str, Any]:
    return build_alert(
        change(index, **kw),
        model_id=model,
        model_version="1.0",
        detected_at=datetime.now(tz=UTC),
        config_fingerprint="cfg",
    )


class Harness:
    """A notifier wired to real Redis, real receivers and a real dead-letter topic."""

    def __init__(self, settings: Settings, redis: Redis, dlq_topic: str, bootstrap: str) -> None:
        self.settings = settings
        self.redis = redis
        self.clock = Clock()
        self.dlq_topic = dlq_topic
        self.bootstrap = bootstrap
        self.registry = OwnerRegistry(redis, settings.redis_prefix)
        self.store = PagingStore(redis, settings.redis_prefix, clock=self.clock)
        self.producer: AIOKafkaProducer | None = None
        self.sender: ChannelSender | None = None
        self.notifier: Notifier | None = None

    async def start(self) -> Harness:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await self.producer.start()
        self.sender = await ChannelSender(self.settings.notify).__aenter__()
        producer = self.producer

        async def to_dlq(key: bytes, value: bytes) -> None:
            await producer.send_and_wait(self.dlq_topic, value=value, key=key)

        async def no_wait(_seconds: float) -> None:
            return None

        self.to_dlq, self.no_wait = to_dlq, no_wait
        self.notifier = self.replica()
        return self

    def replica(self) -> Notifier:
        """Another notifier on the same Redis, clock and receivers: a second process."""
        assert self.sender is not None
        return Notifier(
            self.settings,
            redis=self.redis,
            sender=self.sender,
            dead_letter=self.to_dlq,
            clock=self.clock,
            sleep=self.no_wait,
        )

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.__aexit__(None, None, None)
        if self.producer is not None:
            await self.producer.stop()

    async def own(self, model: str, *channels: str, **kw: Any) -> None:
        await self.registry.set(
            Owner(
                model_id=model,
                owner=f"team-{model}",
                channels=tuple(parse_channel(c) for c in channels),
                runbook=f"https://runbooks.example.com/{model}",
                updated_at_ms=int(time.time() * 1000),
                **kw,
            )
        )

    async def run(self, *alerts: dict[str, Any], wait: bool = True) -> None:
        """Offer alerts, let the group window pass, flush."""
        assert self.notifier is not None
        for a in alerts:
            self.notifier.offer(a)
        if wait:
            self.clock.advance(self.settings.notify.group_wait_s + 0.001)
            await self.notifier.tick()

    async def dead_letters(self, expected: int) -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            self.dlq_topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        found: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(found) < expected:
                batch = await consumer.getmany(timeout_ms=200)
                found += [orjson.loads(m.value) for ms in batch.values() for m in ms]
            # anything beyond the expected count would be a bug too: read a little more
            batch = await consumer.getmany(timeout_ms=300)
            found += [orjson.loads(m.value) for ms in batch.values() for m in ms]
        finally:
            await consumer.stop()
        return found


@pytest.fixture
async def make_harness(
    redis_url: str, kafka_bootstrap: str, make_topic: Callable[..., str], http: HttpReceiver,
    smtp: SmtpReceiver,
) -> AsyncIterator[Callable[..., Any]]:  # fmt: skip
    made: list[Harness] = []

    async def _make(**notify: Any) -> Harness:
        options: dict[str, Any] = {
            "group_wait_s": 30.0,
            "cooldown_s": 3600.0,
            "max_attempts": 3,
            "backoff_base_s": 0.001,
            "request_timeout_s": 2.0,
            "webhook_secret": SECRET,
            "pagerduty_url": f"{http.url}/pagerduty",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "fallback_channels": [f"webhook:{http.url}/fallback"],
            "allow_private_targets": ["127.0.0.1"],  # the receivers, on loopback
        }
        options.update(notify)
        settings = Settings(
            redis_url=redis_url,
            redis_prefix=f"t{uuid.uuid4().hex[:8]}:",
            notify=NotifySettings(**options),
        )
        harness = await Harness(
            settings, Redis.from_url(redis_url), make_topic("dlq", 1), kafka_bootstrap
        ).start()
        made.append(harness)
        return harness

    yield _make
    for harness in made:
        await harness.stop()
        await harness.redis.aclose()


async def run_cli(*argv: str) -> int:
    """The real command, in a thread: it runs its own event loop."""
    return await asyncio.to_thread(cli, list(argv))


async def own_with_escalation(h: Harness, http: HttpReceiver, model: str) -> None:
    """``model`` pages /hook; a critical page unacknowledged for 30 minutes escalates to /boss."""
    await h.own(
        model,
        f"webhook:{http.url}/hook",
        escalate_after_s=1800,
        escalation_channels=(parse_channel(f"webhook:{http.url}/boss"),),
    )


def ids_in_webhook(req: Any) -> list[str]:
    body = req.json()
    return [body["alert_id"], *(a["alert_id"] for a in body["grouped_alerts"])]


# --- routing and grouping -------------------------------------------------------------------


async def test_alerts_of_a_model_are_grouped_into_one_page_per_channel(
    make_harness: Any, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    h = await make_harness()
    await h.own(
        "fraud",
        f"webhook:{http.url}/hook",
        f"slack:{http.url}/slack",
        f"pagerduty:{ROUTING_KEY}",
        "email:oncall@example.com",
    )
    a1 = alert("fraud", 900, detector="adwin")
    a2 = alert("fraud", 950, detector="page_hinkley", after=0.1)
    await h.run(a1, a2, wait=False)
    h.clock.advance(29)
    assert h.notifier is not None
    await h.notifier.tick()
    assert http.requests == [] and smtp.messages == [], "sent before the group window closed"
    h.clock.advance(1.01)
    await h.notifier.tick()

    (hook,) = http.at("/hook")
    assert ids_in_webhook(hook) == [a1["alert_id"], a2["alert_id"]]  # most severe first
    assert verify_signature(hook.body, hook.headers["X-Watchkeeper-Signature"], SECRET)
    assert hook.json()["owner"] == "team-fraud"
    assert hook.json()["runbook"] == "https://runbooks.example.com/fraud"
    (slack,) = http.at("/slack")
    assert "fraud" in slack.json()["text"]
    (pd,) = http.at("/pagerduty")
    event = pd.json()
    assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
    assert event["dedup_key"] == f"watchkeeper-{a1['alert_id']}"
    assert event["payload"]["severity"] == "critical"
    (mail,) = smtp.messages
    assert mail["To"] == "oncall@example.com" and "fraud" in mail["Subject"]
    assert (await h.store.stats())["delivered"] == 8  # 2 alerts x 4 channels


async def test_duplicates_on_the_topic_are_delivered_once(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(cooldown_s=0)
    await h.own("churn", f"webhook:{http.url}/hook")
    a = alert("churn", 500)
    await h.run(a, a)  # twice in one window
    await h.run(a)  # re-emitted later (a replay, a worker restart)
    assert [ids_in_webhook(r) for r in http.at("/hook")] == [[a["alert_id"]]]
    assert (await h.store.stats())["duplicate"] == 2  # one in the window, one later


# --- noise control --------------------------------------------------------------------------


async def test_cooldown_holds_repeats_unless_severity_rises(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(cooldown_s=3600)
    await h.own("m", f"webhook:{http.url}/hook")
    first = alert("m", 100, before=0.05, after=0.08)  # warning
    await h.run(first)
    repeat = alert("m", 200, before=0.05, after=0.08)
    await h.run(repeat)
    worse = alert("m", 300, before=0.05, after=0.30)  # critical: goes through
    await h.run(worse)
    h.clock.advance(3601)
    later = alert("m", 400, before=0.05, after=0.31)
    await h.run(later)
    sent = [ids_in_webhook(r)[0] for r in http.at("/hook")]
    assert sent == [first["alert_id"], worse["alert_id"], later["alert_id"]]
    assert (await h.store.stats())["suppressed_cooldown"] == 1


async def test_silence_from_the_cli_holds_pages_until_it_ends(
    make_harness: Any, http: HttpReceiver, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness(cooldown_s=0)
    monkeypatch.setenv("WATCHKEEPER_REDIS_PREFIX", h.settings.redis_prefix)
    await h.own("quiet", f"webhook:{http.url}/hook")
    silence = ["silence", "quiet", "--for", "2h", "--reason", "migration", "--redis", redis_url]
    assert await run_cli(*silence) == 0
    await h.run(alert("quiet", 1))
    assert http.at("/hook") == []
    h.clock.advance(2 * 3600 + 1)
    after = alert("quiet", 2)
    await h.run(after)
    assert [ids_in_webhook(r) for r in http.at("/hook")] == [[after["alert_id"]]]
    assert (await h.store.stats())["suppressed_silenced"] == 1
    assert await run_cli("silence", "nope", "--for", "soon", "--redis", redis_url) == 2


async def test_unacknowledged_critical_alert_escalates_once(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(cooldown_s=0)
    await own_with_escalation(h, http, "pricing")
    critical = alert("pricing", 10, after=0.5)
    warning = alert("pricing-b", 10, after=0.07)
    await h.run(critical)
    assert h.notifier is not None
    h.clock.advance(1700)
    await h.notifier.tick()
    assert http.at("/boss") == []
    h.clock.advance(200)
    await h.notifier.tick()
    await h.notifier.tick()
    (boss,) = http.at("/boss")
    assert boss.json()["alert_id"] == critical["alert_id"]
    assert boss.json()["notification_reason"] == "escalation"
    assert warning["severity"] == "warning"  # only critical alerts escalate
    assert (await h.store.stats())["escalated"] == 1


async def test_ack_from_the_cli_stops_escalation_and_repeats(
    make_harness: Any, http: HttpReceiver, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness(cooldown_s=60)
    monkeypatch.setenv("WATCHKEEPER_REDIS_PREFIX", h.settings.redis_prefix)
    await own_with_escalation(h, http, "pricing")
    critical = alert("pricing", 10, after=0.5)
    await h.run(critical)
    assert await run_cli("ack", critical["alert_id"], "--by", "alice", "--redis", redis_url) == 0
    assert (await h.store.acked(critical["alert_id"]))["by"] == "alice"
    h.clock.advance(3600)  # past the escalation time and the cooldown, within the ack
    assert h.notifier is not None
    await h.notifier.tick()
    await h.run(alert("pricing", 20, after=0.6))
    assert http.at("/boss") == []
    assert [ids_in_webhook(r) for r in http.at("/hook")] == [[critical["alert_id"]]]
    assert (await h.store.stats())["suppressed_acknowledged"] == 1
    assert await run_cli("ack", "no-such-alert", "--redis", redis_url) == 2


async def test_ack_takes_a_unique_prefix_and_a_second_ack_keeps_the_first(
    make_harness: Any,
    http: HttpReceiver,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The demo prints 12 characters of each id: ``ack`` takes them. A second ack says
    whose ack stands instead of overwriting it."""
    h = await make_harness(cooldown_s=0)
    monkeypatch.setenv("WATCHKEEPER_REDIS_PREFIX", h.settings.redis_prefix)
    await h.own("pricing", f"webhook:{http.url}/hook")
    first, second = alert("pricing", 10, after=0.5), alert("pricing", 11, after=0.6)
    await h.run(first)
    await h.run(second)
    common = next(
        n for n in range(32) if first["alert_id"][n] != second["alert_id"][n]
    )  # the prefix they share, if any, is ambiguous
    if common >= 4:
        assert await run_cli("ack", first["alert_id"][:common], "--redis", redis_url) == 2
        assert "ambiguous" in capsys.readouterr().err
    short = first["alert_id"][:12]
    assert await run_cli("ack", short, "--by", "alice", "--redis", redis_url) == 0
    assert (await h.store.acked(first["alert_id"]))["by"] == "alice"
    assert await run_cli("ack", first["alert_id"], "--by", "bob", "--redis", redis_url) == 1
    assert "already acknowledged by alice" in capsys.readouterr().out
    assert (await h.store.acked(first["alert_id"]))["by"] == "alice"
    assert await run_cli("ack", "zz-not-hex", "--redis", redis_url) == 2


# --- orphans --------------------------------------------------------------------------------


async def test_alert_of_a_model_without_owner_goes_to_the_fallback(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness()
    a = alert("nobody", 77)
    await h.run(a)
    (page,) = http.at("/fallback")
    assert page.json()["notification_reason"] == "orphaned_model"
    assert page.json()["alert_id"] == a["alert_id"]


async def test_without_a_fallback_an_orphan_alert_is_dead_lettered(make_harness: Any) -> None:
    h = await make_harness(fallback_channels=[])
    a = alert("nobody", 77)
    await h.run(a)
    await h.run(a)  # re-emitted: dead-lettered once
    (letter,) = await h.dead_letters(1)
    assert letter["reason"] == "no_channel" and letter["alert"]["alert_id"] == a["alert_id"]


async def test_first_prediction_of_an_unknown_model_raises_one_orphan_alert(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness()
    await h.own("known", f"webhook:{http.url}/hook")
    watch = OrphanWatch(
        h.redis, h.settings.redis_prefix, cooldown_s=3600, recheck_s=0, clock=h.clock
    )
    found = await watch.check(["known", "stray"])
    assert [a["model_id"] for a in found] == ["stray"]
    assert found[0]["kind"] == "orphaned_model" and "owners set stray" in found[0]["message"]
    await watch.raised(found)
    assert await watch.check(["stray"]) == []
    h.clock.advance(3601)
    again = await watch.check(["stray"])
    assert len(again) == 1 and again[0]["alert_id"] != found[0]["alert_id"]
    await h.own("stray", f"webhook:{http.url}/hook")
    h.clock.advance(3601)
    assert await watch.check(["stray"]) == []
    # the notifier drops an orphan alert whose model got an owner meanwhile
    await h.run(found[0])
    assert http.requests == []
    assert (await h.store.stats())["suppressed_owned_now"] == 1


# --- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "attempts", "delivered"),
    [((500, 500), 3, True), ((500, 500, 500), 3, False), ((400,), 1, False), ((429,), 2, True)],
)
async def test_retries_with_backoff_then_dead_letter(
    make_harness: Any,
    http: HttpReceiver,
    statuses: tuple[int, ...],
    attempts: int,
    delivered: bool,
) -> None:
    h = await make_harness(max_attempts=3)
    await h.own("flaky", f"webhook:{http.url}/hook")
    http.answer("/hook", *statuses)
    a = alert("flaky", 5)
    await h.run(a)
    assert len(http.at("/hook")) == attempts
    if delivered:
        assert (await h.store.stats())["delivered"] == 1
    else:
        (letter,) = await h.dead_letters(1)
        assert letter["reason"] == "delivery_failed" and letter["attempts"] == attempts
        assert f"http {statuses[-1]}" in letter["detail"]
        assert letter["channel"]["kind"] == "webhook" and "target" not in letter["channel"]
        assert await h.store.delivery_state(a["alert_id"], parse_channel(
            f"webhook:{http.url}/hook").key) == f"dlq|{letter['detail']}"  # fmt: skip


async def test_refused_and_timed_out_deliveries_are_dead_lettered(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(max_attempts=2, request_timeout_s=0.3)
    closed = free_port()
    await h.own("down", f"webhook:http://127.0.0.1:{closed}/hook")
    await h.own("slow", f"webhook:{http.url}/slow")
    http.answer("/slow", 0, 0)
    await h.run(alert("down", 1), alert("slow", 1))
    letters = await h.dead_letters(2)
    details = sorted(letter["detail"] for letter in letters)
    assert len(letters) == 2 and all(x["attempts"] == 2 for x in letters)
    assert any("refused" in d for d in details) and any("timeout" in d for d in details)


# --- resolve and in-doubt -------------------------------------------------------------------


async def test_recovery_resolves_the_open_incident(make_harness: Any, http: HttpReceiver) -> None:
    h = await make_harness(cooldown_s=0)
    await h.own("fraud", f"pagerduty:{ROUTING_KEY}")
    lonely = alert("fraud", 5, before=0.2, after=0.05, direction="decrease")
    await h.run(lonely)
    assert http.requests == [], "an improvement with nothing open is not a page"
    bad = alert("fraud", 10)
    await h.run(bad)
    good = alert("fraud", 900, before=0.2, after=0.05, direction="decrease")
    await h.run(good)
    await h.run(good)  # redelivered: resolves nothing twice
    trigger, resolve = (r.json() for r in http.at("/pagerduty"))
    assert trigger["event_action"] == "trigger"
    assert (resolve["routing_key"], resolve["event_action"], resolve["dedup_key"]) == (
        ROUTING_KEY,
        "resolve",
        trigger["dedup_key"],
    )


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def slow_mail(smtp: SmtpReceiver, delay_s: float) -> None:
    """The SMTP receiver takes ``delay_s`` to accept each message (read per connection)."""
    accept = smtp.mailbox.handle_DATA

    async def slowly(server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(delay_s)
        return await accept(server, session, envelope)

    smtp.mailbox.handle_DATA = slowly  # type: ignore[method-assign]


async def die_mid_request(
    h: Harness, http: HttpReceiver, smtp: SmtpReceiver | None, *alerts: dict[str, Any]
) -> None:
    """A notifier sends ``alerts`` and dies while every receiver is still answering: the
    HTTP receivers hang, the mail is accepted only after the sender is gone."""
    for path in ("/hook", "/slack", "/pagerduty"):
        http.answer(path, 0)
    if smtp is not None:
        slow_mail(smtp, 0.5)
    dying = h.replica()
    for a in alerts:
        dying.offer(a)
    h.clock.advance(h.settings.notify.group_wait_s + 0.001)
    task = asyncio.create_task(dying.tick())
    await until(lambda: len(http.requests) == 3, "three requests in flight")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if smtp is not None:
        await until(lambda: len(smtp.messages) == 1, "the mail the dead notifier sent")


async def test_a_page_whose_notifier_died_before_sending_is_sent_unmarked(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(delivery_lease_s=60)
    channel = f"webhook:{http.url}/hook"
    await h.own("m", channel)
    a = alert("m", 3)
    crashed = PagingStore(h.redis, h.settings.redis_prefix, clock=h.clock)  # another process
    claim = await crashed.claim(a["alert_id"], parse_channel(channel).key, lease_s=60)
    assert claim.state == "claimed"  # and it died before binding a page: nothing was sent
    await h.run(a)
    assert h.notifier is not None and h.notifier.pending == 1  # waits for the lease
    h.clock.advance(61)
    await h.notifier.tick()
    (page,) = http.at("/hook")
    assert "X-Watchkeeper-Possible-Duplicate" not in page.headers
    assert "possible_duplicate" not in page.json()
    assert h.notifier.pending == 0
    stats = await h.store.stats()
    assert stats["reclaimed"] == 1 and "redelivered" not in stats and "dlq" not in stats


async def test_a_page_cut_short_mid_request_is_sent_again_as_it_was_marked_where_needed(
    make_harness: Any, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    """Missing a page is worse than a duplicate: the page in doubt goes out again, whole,
    with its delivery id and dedup key; Slack and email say it may be a duplicate."""
    h = await make_harness(delivery_lease_s=60, cooldown_s=0)
    hook, slack, mail = f"webhook:{http.url}/hook", f"slack:{http.url}/slack", "email:o@x.org"
    await h.own("m", hook, slack, f"pagerduty:{ROUTING_KEY}", mail)
    a1, a2 = alert("m", 1), alert("m", 2, after=0.1)
    await die_mid_request(h, http, smtp, a1, a2)
    first = {r.path: r for r in http.requests}

    replica = h.notifier
    assert replica is not None
    await h.run(a1)  # re-read from the alerts topic: the offset was never committed
    assert replica.pending == 4 and len(http.requests) == 3  # one per channel, till the lease ends
    h.clock.advance(61)
    await replica.tick()
    assert replica.pending == 0

    (_, hook2), (_, slack2), (_, pd2) = (http.at(p) for p in ("/hook", "/slack", "/pagerduty"))
    assert hook2.headers["X-Watchkeeper-Delivery"] == first["/hook"].headers[
        "X-Watchkeeper-Delivery"]  # fmt: skip
    assert ids_in_webhook(hook2) == ids_in_webhook(first["/hook"]) == [
        a1["alert_id"], a2["alert_id"]]  # fmt: skip
    assert hook2.headers["X-Watchkeeper-Possible-Duplicate"] == "true"
    assert verify_signature(hook2.body, hook2.headers["X-Watchkeeper-Signature"], SECRET)
    assert pd2.body == first["/pagerduty"].body  # same event, same dedup_key
    assert not first["/slack"].json()["text"].startswith("[possible duplicate]")
    assert slack2.json()["text"].startswith("[possible duplicate] ")
    assert "watchkeeper_possible_duplicate" in [b.get("block_id") for b in slack2.json()["blocks"]]
    await until(lambda: len(smtp.messages) == 2, "the mail sent again")
    was, again = smtp.messages
    assert (
        "possible duplicate" not in was["Subject"]
        and was["X-Watchkeeper-Possible-Duplicate"] is None
    )
    assert again["Subject"].startswith("[Watchkeeper] [possible duplicate] ")
    assert again["X-Watchkeeper-Possible-Duplicate"] == "yes"
    assert again["Message-ID"] == was["Message-ID"]

    for spec in (hook, slack, f"pagerduty:{ROUTING_KEY}", mail):
        for a in (a1, a2):
            state = await h.store.delivery_state(a["alert_id"], parse_channel(spec).key)
            assert state is not None and state.startswith("sent|")
    await h.run(a2)  # its other alert, re-read too: already sent with the page
    assert len(http.requests) == 6
    stats = await h.store.stats()
    assert (stats["redelivered_pages"], stats["redelivered"], stats["duplicate"]) == (4, 8, 4)
    assert "dlq" not in stats


async def test_a_retry_after_a_timeout_is_marked_as_a_possible_duplicate(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness(request_timeout_s=0.3)
    await h.own("m", f"slack:{http.url}/slack")
    http.answer("/slack", 0)  # the receiver got it but the answer never came
    await h.run(alert("m", 1))
    first, second = http.at("/slack")
    assert not first.json()["text"].startswith("[possible duplicate]")
    assert second.json()["text"].startswith("[possible duplicate] ")


async def test_a_page_in_doubt_past_its_resends_is_dead_lettered_and_summarised_to_the_fallback(
    make_harness: Any, http: HttpReceiver
) -> None:
    """Dead letters are not silent: the fallback gets one summary per window, with counts."""
    h = await make_harness(
        delivery_lease_s=60, redeliver_max=0, dead_letter_summary_s=600, cooldown_s=0
    )
    await h.own("m", f"webhook:{http.url}/hook", f"slack:{http.url}/slack")
    await h.own("broken", f"webhook:{http.url}/gone")
    http.answer("/gone", 404)
    a1, a2 = alert("m", 1), alert("broken", 1)
    h.clock.t = (h.clock.t // 600) * 600 + 1  # at the start of a summary window
    await h.run(a2)  # a permanent failure
    await die_mid_request(h, http, None, a1)
    h.clock.advance(61)
    await h.run(a1)  # past the lease: in doubt, and no re-send is allowed
    letters = await h.dead_letters(3)
    assert sorted(x["reason"] for x in letters) == [
        "delivery_failed", "delivery_in_doubt", "delivery_in_doubt"]  # fmt: skip
    assert http.at("/fallback") == []  # the window is still open
    h.clock.advance(600)
    assert h.notifier is not None
    other = h.replica()
    await asyncio.gather(h.notifier.tick(), other.tick())  # two replicas, one summary
    await h.notifier.tick()
    (summary,) = http.at("/fallback")
    body = summary.json()
    assert body["kind"] == "pages_dead_lettered" and body["severity"] == "critical"
    details = body["notification_details"]
    assert details["dead_letters"] == {
        "total": 3,
        "reasons": {"delivery_in_doubt": 2, "delivery_failed": 1},
        "channels": {"webhook": 2, "slack": 1},
    }
    assert details["models"] == {"m": 2, "broken": 1}
    assert "3 page deliveries were dead-lettered" in details["summary"]
    # a later dead letter goes into the next window's summary, not this one's again
    http.answer("/gone", 404)
    await h.run(alert("broken", 2))
    h.clock.advance(600)
    await h.notifier.tick()
    assert [r.json()["notification_details"]["dead_letters"]["total"]
            for r in http.at("/fallback")] == [3, 1]  # fmt: skip
    assert (await h.store.stats())["dead_letter_summaries"] == 2


async def test_a_redis_outage_keeps_alerts_until_redis_is_back(
    http: HttpReceiver, kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    """No crash, no release of the Kafka offset, and delivery once Redis returns."""
    first = EmbeddedRedis().start()
    port = first.port
    settings = Settings(
        redis_url=first.url,
        notify=NotifySettings(
            group_wait_s=0,
            fallback_channels=[f"webhook:{http.url}/fallback"],
            allow_private_targets=["127.0.0.1"],
        ),
    )
    redis = Redis.from_url(first.url)
    harness = await Harness(settings, redis, make_topic("dlq", 1), kafka_bootstrap).start()
    second: EmbeddedRedis | None = None
    try:
        assert harness.notifier is not None
        released: list[str] = []
        a = alert("nobody", 9)
        first.stop()
        harness.notifier.offer(a, release=lambda: released.append(a["alert_id"]))
        await harness.notifier.tick()  # must not raise
        assert released == [] and harness.notifier.pending == 1
        assert http.requests == []
        second = EmbeddedRedis(port=port).start()
        harness.clock.advance(60)
        await harness.notifier.tick()
        assert released == [a["alert_id"]] and harness.notifier.pending == 0
        (page,) = http.at("/fallback")
        assert page.json()["alert_id"] == a["alert_id"]
    finally:
        await harness.stop()
        await redis.aclose()
        for server in (first, second):
            if server is not None:
                server.stop()


# --- secrets and the outbound policy ---------------------------------------------------------


async def test_dead_letters_logs_and_redis_never_carry_a_channel_secret(
    make_harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A delivery error that quotes the URL (aiohttp does, for a receiver answering
    garbage) reaches the dead letter, the delivery record and the log redacted."""
    garbage = await GarbageServer().start()
    try:
        h = await make_harness(max_attempts=2)
        base = f"http://127.0.0.1:{garbage.port}"
        slack = f"slack:{base}/services/T000/B000/SECRETTOKEN123"
        hook = f"webhook:http://ops:hunter2hunter2@127.0.0.1:{garbage.port}/h?token=SECRETQUERY99"
        await h.own("leaky", slack, hook)
        with caplog.at_level(logging.INFO, logger="streams.notify"):
            await h.run(alert("leaky", 1))
        letters = await h.dead_letters(2)
    finally:
        await garbage.stop()
    assert len(letters) == 2 and all(x["reason"] == "delivery_failed" for x in letters)
    states = [
        await h.store.delivery_state(letters[0]["alert"]["alert_id"], parse_channel(c).key)
        for c in (slack, hook)
    ]
    everything = orjson.dumps(letters).decode() + caplog.text + " ".join(map(str, states))
    for secret in ("SECRETTOKEN123", "hunter2hunter2", "SECRETQUERY99"):
        assert secret not in everything
    assert all("malformed response from 127.0.0.1" in x["detail"] for x in letters)


async def test_a_registered_target_refused_at_send_time_is_dead_lettered_at_once(
    make_harness: Any, http: HttpReceiver
) -> None:
    """A record that predates the policy (or bypassed the CLI) is refused when sent:
    permanent, one attempt, no connection."""
    h = await make_harness(max_attempts=5)
    await h.own("meta", "webhook:http://169.254.169.254/latest/meta-data/")
    await h.run(alert("meta", 1))
    (letter,) = await h.dead_letters(1)
    assert letter["attempts"] == 1
    assert letter["detail"].startswith("refused by the outbound policy")
    assert "link-local" in letter["detail"]


async def test_a_fallback_refused_by_the_policy_stops_the_notifier_at_startup(
    make_harness: Any, http: HttpReceiver
) -> None:
    h = await make_harness()
    settings = Settings(
        redis_url=h.settings.redis_url,
        notify=NotifySettings(fallback_channels=[f"webhook:{http.url}/fallback"]),
    )
    with pytest.raises(ConfigError, match="127.0.0.1 is loopback.*ALLOW_PRIVATE_TARGETS"):
        Notifier(settings, redis=h.redis, sender=h.sender, dead_letter=h.to_dlq)  # type: ignore[arg-type]


async def test_startup_warns_when_webhooks_would_go_out_unsigned(
    make_harness: Any, http: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    signed = await make_harness()
    unsigned = await make_harness(webhook_secret=None)
    for h in (signed, unsigned):
        await h.own("m", f"webhook:{http.url}/hook", "email:o@example.com")
    assert signed.notifier is not None and unsigned.notifier is not None
    with caplog.at_level(logging.WARNING, logger="streams.notify.loop"):
        assert await signed.notifier.warn_unsigned() == 0
        assert caplog.records == []
        assert await unsigned.notifier.warn_unsigned() == 2  # the fallback and m's hook
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "unsigned" in record.getMessage()
