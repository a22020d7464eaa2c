"""``watchkeeper demo``: the whole pipeline on an embedded broker and Redis, end to end.

Starts tansu and redis-server on free loopback ports, a real worker process, publishes a
seeded scenario through the producer helper (plus a few malformed messages, which must
land in the dead-letter topic), prints alerts as they appear on the ``alerts`` topic and
a summary and the fleet as ``watchkeeper status`` shows it at the end, then stops
everything it started (with ``--keep-running``, only at Ctrl-C: meanwhile ``status``,
``alerts``, ``ack``, the web page and the metrics can be tried against it).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from streams.connections import aiokafka_kwargs, redis_client
from streams.contract.alerts import LABEL_FREE_KINDS
from streams.contract.notification import parse_channel
from streams.dev.embedded import embedded_stack, free_port
from streams.dev.process import WorkerProcess
from streams.dev.simulate import HOUR_MS, Scenario, build_scenario
from streams.errors import WatchkeeperError
from streams.producer import WatchkeeperProducer
from streams.settings import KafkaSecurity, Settings
from streams.store.health import HealthStore
from streams.store.owners import Owner, OwnerRegistry
from streams.store.paging import PagingStore
from streams.topology import ensure_topics

__all__ = ["AlertCollector", "MALFORMED", "produce_scenario", "run_demo", "wait_for_pipeline"]

# (topic kind, raw message) published next to the scenario; each must be dead-lettered.
MALFORMED: list[tuple[Literal["p", "g"], bytes]] = [
    ("p", b'{"prediction_id": "bad-1", "model_id": "fraud-eu", "prediction": '),
    ("p", b'{"prediction_id": "bad-2", "prediction": 1}'),
    ("p", b'[{"prediction_id": "bad-3", "model_id": "fraud-eu", "prediction": {"x": 1}}]'),
    ("g", b'{"label": 1}'),
    ("g", b'"just a string"'),
]


async def produce_scenario(
    bootstrap: str,
    scenario: Scenario,
    settings: Settings,
    *,
    batch_size: int = 500,
    malformed: bool = True,
) -> None:
    """Publish the scenario in arrival order, as serving systems and label pipelines would."""
    t = settings.topics
    async with WatchkeeperProducer(
        bootstrap,
        predictions_topic=t.predictions,
        ground_truth_topic=t.ground_truth,
        batch_size=batch_size,
        validate=False,
        security=settings.kafka,
    ) as producer:
        for kind, event in scenario.events:
            if kind == "p":
                await producer.predict(
                    event["prediction_id"],
                    event["model_id"],
                    event["prediction"],
                    model_version=event.get("model_version"),
                    timestamp=event.get("timestamp"),
                    score=event.get("score"),
                    segment=event.get("segment"),
                    features=event.get("features"),
                )
            else:
                await producer.label(
                    event["prediction_id"], event["label"], timestamp=event["timestamp"]
                )
    if malformed:
        raw = AIOKafkaProducer(**aiokafka_kwargs(bootstrap, settings.kafka))
        await raw.start()
        try:
            for kind, value in MALFORMED:
                topic = t.predictions if kind == "p" else t.ground_truth
                await raw.send_and_wait(topic, value)
        finally:
            await raw.stop()


@dataclass
class AlertCollector:
    """Reads the alerts topic from the beginning, in the background."""

    bootstrap: str
    topic: str
    on_alert: Callable[[dict[str, Any]], None] | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    kafka: KafkaSecurity | None = None  # None: WATCHKEEPER_KAFKA_* from the environment
    _task: asyncio.Task[None] | None = None

    async def start(self) -> AlertCollector:
        consumer = AIOKafkaConsumer(
            self.topic,
            **aiokafka_kwargs(self.bootstrap, self.kafka or KafkaSecurity()),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._run(consumer))
        return self

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        alert = orjson.loads(record.value)
                        self.alerts.append(alert)
                        if self.on_alert is not None:
                            self.on_alert(alert)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


async def wait_for_pipeline(
    health: HealthStore,
    collector: AlertCollector,
    *,
    joined: int,
    dlq: int,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
) -> dict[str, int]:
    """Wait until every joinable pair went through the detectors and all alerts are read.

    Outcomes held for event-time ordering are released once the stream is idle
    (``idle_flush_s``), so this also waits for nothing to be held.
    """
    deadline = time.monotonic() + timeout
    totals: dict[str, int] = {}
    while time.monotonic() < deadline:
        if not alive():
            raise WatchkeeperError("the worker process exited; see its log")
        totals = await health.totals()
        done = (
            totals.get("joined", 0) + totals.get("unscorable", 0) >= joined
            and totals.get("outcomes", 0) >= totals.get("joined", 0)
            and totals.get("dlq", 0) >= dlq
            and len(collector.alerts) >= totals.get("alerts", 0)
            and await health.held() == 0
        )
        if done:
            return totals
        await asyncio.sleep(0.2)
    raise WatchkeeperError(f"pipeline did not finish within {timeout:.0f}s; totals={totals}")


def _print_alert(console: Console) -> Callable[[dict[str, Any]], None]:
    def show(a: dict[str, Any]) -> None:
        style = {"critical": "bold red", "warning": "yellow", "info": "green"}[a["severity"]]
        b, f = a["before"], a["after"]
        if not a["kind"].startswith("performance_") or b is None or f is None:
            # orphaned_model and the label-free signals: their message says it
            status = " (resolved)" if a.get("status") == "resolved" else ""
            console.print(
                f"[{style}]{a['severity'].upper():8}[/] {a['model_id']:<14} {a['kind']:<24} "
                f"{a.get('message', '')}{status}  id {a['alert_id'][:12]}"
            )
            return
        console.print(
            f"[{style}]{a['severity'].upper():8}[/] {a['model_id']:<14} {a['kind']:<24} "
            f"{a['detector']:<12} at {a['event_time']}  error {b['error_rate']:.3f} → "
            f"{f['error_rate']:.3f} (n {b['count']}/{f['count']})  id {a['alert_id'][:12]}"
        )

    return show


def summarize(
    scenario: Scenario,
    alerts: list[dict[str, Any]],
    totals: dict[str, int],
    paging: dict[str, int] | None = None,
    pages: int = 0,
) -> tuple[Table, Table, Table, Table]:
    """Totals, and per degraded model: detected or not, and the delay in event time."""
    counts = Table(title="Watchkeeper demo summary")
    counts.add_column("what")
    counts.add_column("count", justify="right")
    degradations = [a for a in alerts if a["kind"] == "performance_degradation"]
    rows = [
        ("models", len(scenario.models)),
        ("events published", len(scenario.events) + len(MALFORMED)),
        ("predictions", totals.get("predictions", 0)),
        ("labels (incl. duplicates)", totals.get("labels", 0) + totals.get("duplicate_labels", 0)),
        ("joined outcomes", totals.get("joined", 0)),
        ("duplicate labels ignored", totals.get("duplicate_labels", 0)),
        ("dead-lettered", totals.get("dlq", 0)),
        ("outcomes out of event-time order", totals.get("late_outcomes", 0)),
        (
            "input events behind their partition by more than the lag",
            totals.get("disordered_input", 0),
        ),
        ("degradation alerts", len(degradations)),
        ("improvement (info) events", sum(a["kind"] == "performance_improvement" for a in alerts)),
        ("orphaned_model alerts", sum(a["kind"] == "orphaned_model" for a in alerts)),
        (
            "label-free alerts (drift, labels, silence, inputs, estimate)",
            sum(a["kind"] in LABEL_FREE for a in alerts),
        ),
    ]
    if paging is not None:
        held = {k.removeprefix("suppressed_"): v for k, v in paging.items() if "suppressed_" in k}
        rows += [
            ("pages received by owners and fallback", pages),
            ("alerts in those pages", paging.get("delivered", 0)),
            ("alerts held back (cooldown, info, …)", f"{sum(held.values())} {held or ''}"),
            ("pages dead-lettered", paging.get("dlq", 0)),
        ]
    for name, value in rows:
        counts.add_row(name, str(value))
    delays = Table(title="Degraded models: detection")
    for col in ("model", "error before → after", "changed at", "first alert", "delay", "detector"):
        delays.add_column(col)
    for spec in scenario.degraded:
        assert spec.change_at_ms is not None
        mine = sorted(
            (
                a
                for a in degradations
                if a["model_id"] == spec.model_id and a["event_time_ms"] >= spec.change_at_ms
            ),
            key=lambda a: a["event_time_ms"],
        )
        first = mine[0] if mine else None
        delays.add_row(
            spec.model_id,
            f"{spec.base_error:.2f} → {spec.degraded_error:.2f}",
            _hours(spec.change_at_ms - scenario.start_ms),
            _hours(first["event_time_ms"] - scenario.start_ms) if first else "not detected",
            _hours(first["event_time_ms"] - spec.change_at_ms) if first else "-",
            first["detector"] if first else "-",
        )
    canaries = {m.model_id for m in scenario.canaries}  # a worse canary raises its error
    stable = {m.model_id for m in scenario.models if m.change_at_ms is None} - canaries
    false_alarms = sum(a["model_id"] in stable for a in degradations)
    delays.caption = f"degradation alerts on the {len(stable)} stable models: {false_alarms}"
    return counts, delays, label_free_table(scenario, alerts), lifecycle_table(scenario, alerts)


def lifecycle_table(scenario: Scenario, alerts: list[dict[str, Any]]) -> Table:
    """The canary that regresses and the upstream rename: what caught them, and when."""
    table = Table(title="Model lifecycle: versions and inputs")
    for col in ("model", "what happened", "at", "alert", "first fired", "after"):
        table.add_column(col)
    cases = [
        (m.model_id, "canary 2.0.0-canary on 20 %, +10 points", m.canary_from_ms, k)
        for m in scenario.canaries
        for k in ("version_changed", "version_regression")
    ] + [
        (m.model_id, "upstream renames amount → amount_eur", m.renamed_from_ms, "schema_change")
        for m in scenario.renamed
    ]
    for model_id, what, at, kind in cases:
        assert at is not None
        mine = [a for a in alerts if a["model_id"] == model_id and a["kind"] == kind]
        found = min(mine, key=lambda a: a["event_time_ms"]) if mine else None
        table.add_row(*_case_row(scenario, model_id, what, at, kind, found))
    return table


def _case_row(
    scenario: Scenario, model_id: str, what: str, at: int, kind: str, found: dict[str, Any] | None
) -> tuple[str, ...]:
    """A cause and the first alert that caught it, in event hours from the start."""
    return (
        model_id,
        what,
        _hours(at - scenario.start_ms),
        kind,
        _hours(found["event_time_ms"] - scenario.start_ms) if found else "not detected",
        _hours(found["event_time_ms"] - at) if found else "-",
    )


LABEL_FREE = LABEL_FREE_KINDS


def first_paging(
    alerts: list[dict[str, Any]], model_id: str, kind: str, since_ms: int
) -> dict[str, Any] | None:
    """The first firing alert of ``kind`` above ``info`` on ``model_id`` at or after
    ``since_ms`` (event time)."""
    mine = [
        a
        for a in alerts
        if a["model_id"] == model_id
        and a["kind"] == kind
        and a.get("status", "firing") == "firing"
        and a["severity"] != "info"
        and a["event_time_ms"] >= since_ms
    ]
    return min(mine, key=lambda a: a["event_time_ms"]) if mine else None


def label_free_table(scenario: Scenario, alerts: list[dict[str, Any]]) -> Table:
    """Per scenario model with a label-free cause: the first firing alert of each kind
    that should catch it, in event time from the cause."""
    table = Table(title="Before the labels: label-free signals")
    for col in ("model", "what happened", "at", "alert", "first fired", "after"):
        table.add_column(col)

    cases: list[tuple[str, str, int, str]] = []
    for m in scenario.labels_stopped:
        assert m.labels_stop_ms is not None
        cases.append((m.model_id, "labels stop", m.labels_stop_ms, "labels_missing"))
        cases.append(
            (m.model_id, "positive rate 30 % → 50 %", m.labels_stop_ms, "prediction_drift")
        )
    for m in scenario.silenced:
        assert m.silent_from_ms is not None
        cases.append((m.model_id, "stops serving", m.silent_from_ms, "model_silent"))
    for m in scenario.degraded:
        assert m.change_at_ms is not None
        cases.append(
            (m.model_id, "error rises (scores show it)", m.change_at_ms, "estimated_degradation")
        )
    for model_id, what, at, kind in cases:
        found = first_paging(alerts, model_id, kind, at)
        table.add_row(*_case_row(scenario, model_id, what, at, kind, found))
    stable = {
        m.model_id
        for m in scenario.models
        if m.change_at_ms is None
        and m.labels_stop_ms is None
        and m.silent_from_ms is None
        and m.canary_from_ms is None
        and m.renamed_from_ms is None
    }
    noise = sum(
        a["model_id"] in stable and a["kind"] in LABEL_FREE and a["severity"] != "info"
        for a in alerts
    )
    table.caption = f"paging label-free alerts on the {len(stable)} unchanged models: {noise}"
    return table


class PagerInbox:
    """A webhook receiver standing in for the owners' pagers: prints each page."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.pages: list[tuple[str, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> PagerInbox:
        app = web.Application()
        app.router.add_post("/{who:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        page = await request.json()
        who = request.match_info["who"]
        self.pages.append((who, page))
        grouped = len(page.get("grouped_alerts", []))
        more = f" (+{grouped} grouped)" if grouped else ""
        reason = page.get("notification_reason")
        what = "RESOLVED " if page.get("notification_action") == "resolve" else ""
        if reason == "orphaned_model":
            what += "NO OWNER, to the fallback channel: "
        orphans = (page.get("notification_details") or {}).get("orphans")
        if orphans:  # the fallback's summary of models without an owner
            self.console.print(
                f"[bold magenta]PAGE[/] → {who:<22} NO OWNER: {orphans['total']} model(s) "
                f"serving without an owner: {', '.join(orphans['models'])}"
            )
            return web.Response(status=200)
        self.console.print(
            f"[bold magenta]PAGE[/] → {who:<22} {what}{page['severity'].upper()} "
            f"{page['model_id']} {page['kind']}{more}  runbook {page.get('runbook') or '-'}"
        )
        return web.Response(status=200)


async def register_owners(redis: Redis, settings: Settings, scenario: Scenario, inbox: str) -> str:
    """Owners for every model but one stable model, which stays an orphan on purpose."""
    orphan = [m for m in scenario.models if m.change_at_ms is None][-1].model_id
    registry = OwnerRegistry(redis, settings.redis_prefix)
    now = int(time.time() * 1000)
    await registry.import_many(
        Owner(
            model_id=m.model_id,
            owner=f"team-{m.model_id.split('-')[0]}",
            channels=(parse_channel(f"webhook:{inbox}/team-{m.model_id.split('-')[0]}"),),
            runbook=f"https://runbooks.example.com/models/{m.model_id}",
            updated_at_ms=now,
        )
        for m in scenario.models
        if m.model_id != orphan
    )
    return orphan


async def wait_for_notifier(
    store: PagingStore, alerts: int, *, timeout: float, alive: Callable[[], bool]
) -> dict[str, int]:
    """Until every alert read from the topic was paged, held back or dead-lettered."""
    deadline = time.monotonic() + timeout
    stats: dict[str, int] = {}
    while time.monotonic() < deadline:
        if not alive():
            raise WatchkeeperError("the notifier process exited; see its log")
        stats = await store.stats()
        handled = sum(v for k, v in stats.items() if k.startswith("suppressed_"))
        handled += stats.get("delivered", 0) + stats.get("dlq", 0)
        if handled >= alerts:
            return stats
        await asyncio.sleep(0.2)
    raise WatchkeeperError(f"notifier did not finish within {timeout:.0f}s; stats={stats}")


def _hours(ms: int) -> str:
    return f"{ms / HOUR_MS:+.1f} h" if ms < 0 else f"{ms / HOUR_MS:.1f} h"


async def _drive(
    settings: Settings,
    bootstrap: str,
    scenario: Scenario,
    worker: WorkerProcess,
    console: Console,
    timeout: float,
    stay: Stay | None = None,
) -> None:
    collector = await AlertCollector(
        bootstrap, settings.topics.alerts, _print_alert(console), kafka=settings.kafka
    ).start()
    redis = redis_client(settings)
    inbox = await PagerInbox(console).start()
    notifier = WorkerProcess(
        settings.broker,
        settings.redis_url,
        worker.log_path.with_name("notifier.log"),
        env={
            "WATCHKEEPER_NOTIFY_GROUP_WAIT_S": "1",
            # orphans are summarised per window (300 s by default): one within the demo
            "WATCHKEEPER_NOTIFY_ORPHAN_SUMMARY_S": "5",
            # the pager inbox is this process, on loopback: exempt from the outbound policy
            "WATCHKEEPER_NOTIFY_ALLOW_PRIVATE_TARGETS": '["127.0.0.1"]',
            "WATCHKEEPER_NOTIFY_FALLBACK_CHANNELS": orjson.dumps(
                [f"webhook:{inbox.url}/fallback-oncall"]
            ).decode(),
            **({} if stay is None else {"WATCHKEEPER_METRICS_PORT": str(stay.notifier_metrics)}),
        },
        command="notify",
    )
    try:
        orphan = await register_owners(redis, settings, scenario, inbox.url)
        console.print(
            f"owners registered for {len(scenario.models) - 1} models; {orphan} has none "
            f"(its pages go to the fallback channel); pager inbox {inbox.url}"
        )
        notifier.start()
        health = HealthStore(redis, settings.redis_prefix)
        started = time.monotonic()
        await produce_scenario(bootstrap, scenario, settings)
        console.print(
            f"published {len(scenario.events):,} events in "
            f"{time.monotonic() - started:.1f}s; waiting for the worker…"
        )
        totals = await wait_for_pipeline(
            health,
            collector,
            joined=scenario.labelled_predictions,
            dlq=len(MALFORMED),
            timeout=timeout,
            alive=worker.alive,
        )
        console.print(f"pipeline drained {time.monotonic() - started:.1f}s after publishing began")
        store = PagingStore(redis, settings.redis_prefix, clock=time.time)
        paging = await wait_for_notifier(
            store, len(collector.alerts), timeout=60, alive=notifier.alive
        )
        totals["late_outcomes"] = await health.late_outcomes()
        for table in summarize(scenario, collector.alerts, totals, paging, len(inbox.pages)):
            console.print(table)
        await _print_fleet(redis, settings, console)
        if stay is not None:
            await _stay(settings, stay, worker, notifier, console)
    except WatchkeeperError:
        console.print("[red]notifier log tail:[/]\n" + notifier.log_tail())
        raise
    finally:
        await asyncio.to_thread(notifier.stop)
        await inbox.stop()
        await collector.stop()
        await redis.aclose()


@dataclass(frozen=True)
class Stay:
    """``demo --keep-running``: the ports of what stays up for the user to explore."""

    ui: int
    worker_metrics: int
    notifier_metrics: int


async def _print_fleet(redis: Redis, settings: Settings, console: Console) -> None:
    """The fleet at a glance, as ``watchkeeper status`` shows it."""
    from streams.cli.status import status_table, summary_line
    from streams.views.fleet import fleet_status

    now_ms = int(time.time() * 1000)
    fleet = await fleet_status(redis, settings, now_ms=now_ms)
    console.print(f"\n[bold]watchkeeper status[/]: {summary_line(fleet, now_ms)}")
    # piped (CI logs, tee), rich would cut the table to 80 columns
    wide = console if console.is_terminal else Console(width=max(console.width, 180))
    wide.print(status_table(fleet[:8], now_ms))
    if len(fleet) > 8:
        console.print(f"… and {len(fleet) - 8} more models")


async def _stay(
    settings: Settings,
    stay: Stay,
    worker: WorkerProcess,
    notifier: WorkerProcess,
    console: Console,
) -> None:
    """Keep the stack up, with the web page, until Ctrl-C or SIGTERM."""
    import signal

    ui = WorkerProcess(
        settings.broker,
        settings.redis_url,
        worker.log_path.with_name("ui.log"),
        args=["--port", str(stay.ui)],
        command="ui",
    ).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    env = f"export WATCHKEEPER_BROKER={settings.broker} WATCHKEEPER_REDIS_URL={settings.redis_url}"
    console.print(
        "\n[bold]The stack stays up until Ctrl-C.[/] In another terminal:\n"
        f"  {env}\n"
        "  watchkeeper status\n"
        "  watchkeeper alerts list --model fraud-eu\n"
        "  watchkeeper alerts show <12 characters of an id>\n"
        "  watchkeeper ack <id prefix> --by you\n"
        f"web page      http://127.0.0.1:{stay.ui}/\n"
        f"metrics       http://127.0.0.1:{stay.worker_metrics}/metrics (worker), "
        f"http://127.0.0.1:{stay.notifier_metrics}/metrics (notifier)",
        soft_wrap=True,  # commands to copy, not to wrap
    )
    try:
        while not stop.is_set():
            if not (worker.alive() and notifier.alive() and ui.alive()):
                raise WatchkeeperError("a process of the stack exited; see its log")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        console.print("stopping…")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(ui.stop)


def run_demo(
    *,
    models: int = 24,
    predictions_per_model: int = 3000,
    seed: int = 7,
    timeout: float = 150.0,
    keep_running: bool = False,
    ui_port: int = 0,
) -> int:
    """Run the demo; returns the process exit code. ``keep_running`` leaves the stack up,
    with the web page on ``ui_port`` (0: a free port), until Ctrl-C."""
    console = Console()
    scenario = build_scenario(
        models=models,
        predictions_per_model=predictions_per_model,
        seed=seed,
        degraded=min(3, models),
        labels_stop=1 if models >= 6 else 0,
        silent=1 if models >= 6 else 0,
        canary=1 if models >= 8 else 0,
        renamed=1 if models >= 8 else 0,
        features=True,
    )
    with embedded_stack() as (broker, redis), tempfile.TemporaryDirectory() as tmp:
        console.print(f"embedded broker {broker.url}  redis {redis.url}")
        settings = Settings(
            broker=broker.url,
            redis_url=redis.url,
            app_id="watchkeeper-demo",
            partitions=4,
            data_dir=Path(tmp) / "data",
        )
        asyncio.run(ensure_topics(settings))
        stay = Stay(ui_port or free_port(), free_port(), free_port()) if keep_running else None
        worker = WorkerProcess(
            broker.url,
            redis.url,
            Path(tmp) / "worker.log",
            args=["--app-id", settings.app_id, "--data-dir", str(settings.data_dir)],
            env={} if stay is None else {"WATCHKEEPER_METRICS_PORT": str(stay.worker_metrics)},
        ).start()
        console.print(
            f"worker pid {worker.proc.pid if worker.proc else '?'}; "
            f"{len(scenario.models)} models, {scenario.predictions:,} predictions, "
            f"{scenario.labels:,} labels"
        )
        try:
            asyncio.run(
                _drive(settings, broker.bootstrap, scenario, worker, console, timeout, stay)
            )
        except WatchkeeperError:
            console.print("[red]worker log tail:[/]\n" + worker.log_tail())
            raise
        finally:
            worker.stop()
    return 0
