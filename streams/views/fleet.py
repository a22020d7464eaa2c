"""The fleet at a glance: one row per model from the workers' health snapshots, the owner
registry and the notifier's paging state, worst first.

Worst first means, in this order (:func:`worst_first`):

1. ``critical``: a model with an open critical incident, then a model nobody owns (an
   orphan: its pages reach no accountable person);
2. ``warning``: an open incident of lower severity, or a model gone silent (its
   ``model_silent`` signal is firing), even before the notifier has paged it;
3. ``ok``: seen in traffic, nothing open;
4. ``unknown``: registered in the owner registry but with no health snapshot (never seen
   in traffic, or its keys expired with the workers' model retention).

Within a state, more open incidents come first, then model ids in order. The whole
prediction stream's ``model_silent`` (model ``*``, raised when no prediction arrives at
all) has a row of its own while its incident is open.

Everything is read in a fixed number of Redis round trips (pipelines), however many
models there are; the notifier's records are read as it writes them
(:mod:`streams.store.paging`), so "open" means what the notifier will resolve next.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, get_args

import orjson
from redis.asyncio import Redis

from streams.contract.alerts import FLEET, AlertKind
from streams.errors import WatchkeeperError
from streams.settings import Settings
from streams.store.health import HealthStore
from streams.store.owners import Owner
from streams.store.paging import PagingStore

__all__ = [
    "INCIDENT_KINDS",
    "STATES",
    "TREND_POINTS",
    "ModelStatus",
    "fleet_status",
    "model_state",
    "worst_first",
]

STATES = ("critical", "warning", "ok", "unknown")
"""The states of :class:`ModelStatus`, worst first."""

INCIDENT_KINDS: tuple[str, ...] = tuple(
    k for k in get_args(AlertKind) if k != "performance_improvement"
)
"""Kinds that open an incident of their own (an improvement resolves a degradation's)."""

TREND_POINTS = 8
"""Series points in :attr:`ModelStatus.trend`: the error rates of the newest hourly
buckets of prediction time that have outcomes (about eight hours when labels keep up)."""


@dataclass(frozen=True)
class ModelStatus:
    """One model as an on-call person asks about it."""

    model_id: str
    owner: str | None  # None: no registered owner (an orphan)
    runbook: str | None
    orphan: bool
    model_version: str | None
    last_prediction_ms: int | None  # event time of the newest prediction
    label_coverage: float | None  # share of predictions labelled within the expected delay
    error_rate: float | None  # now: the detectors' recent window
    baseline_error_rate: float | None  # over every outcome seen
    outcomes: int
    predictions: int
    open_alerts: tuple[str, ...]  # kinds with an open incident, e.g. performance_degradation
    silenced_until_ms: int | None
    silent: bool  # the model stopped serving (model_silent firing)
    state: str  # "critical" | "warning" | "ok" | "unknown": what sorts worst first
    # added by the status command (the fields above are the shared interface):
    open_alert_ids: tuple[str, ...] = ()  # per open incident, the alert that opened it
    open_severities: tuple[str, ...] = ()  # per open incident, its severity
    last_seen_ms: int | None = None  # wall clock when a worker last saw its traffic
    last_alert_id: str | None = None  # the workers' newest alert of this model
    last_alert_kind: str | None = None
    trend: tuple[float, ...] = ()  # error rate per hour of prediction time, oldest first

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, every field, in declaration order (``status --json``)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def model_state(*, orphan: bool, open_severities: Sequence[str], silent: bool, seen: bool) -> str:
    """The row's state (see the module docstring for what each means)."""
    if orphan or "critical" in open_severities:
        return "critical"
    if open_severities or silent:
        return "warning"
    return "ok" if seen else "unknown"


def worst_first(models: Iterable[ModelStatus]) -> list[ModelStatus]:
    """Sorted as the module docstring says: by state, a critical incident before an orphan
    without one, more open incidents first, then by model id."""

    def key(m: ModelStatus) -> tuple[int, int, int, str]:
        critical_incident = "critical" in m.open_severities
        return (
            STATES.index(m.state),
            0 if critical_incident else 1,
            -len(m.open_alerts),
            m.model_id,
        )

    return sorted(models, key=key)


async def fleet_status(
    redis: Redis, settings: Settings, *, now_ms: int | None = None
) -> list[ModelStatus]:
    """Every model known to the workers or the owner registry, worst first."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    prefix = settings.redis_prefix
    health = HealthStore(redis, prefix)
    paging = PagingStore(redis, prefix, clock=lambda: now / 1000)

    pipe = redis.pipeline(transaction=False)
    pipe.zrange(health.key("models"), 0, -1, withscores=True)
    pipe.hgetall(f"{prefix}owners")
    seen_raw, owners_raw = await pipe.execute()
    seen = {_text(m): int(score) for m, score in seen_raw}
    owners = {_text(m): _owner(raw) for m, raw in owners_raw.items()}
    models = sorted(seen.keys() | owners.keys())
    if not models:
        return []
    # the whole prediction stream's model_silent (model "*") is no model in traffic: its
    # row is shown while its incident is open
    fleet_row = FLEET not in models
    if fleet_row:
        models.append(FLEET)

    pipe = redis.pipeline(transaction=False)
    for model in models:
        pipe.hgetall(health.key("health", model))
        pipe.hget(health.key("model", model), "predictions")
        pipe.get(paging.key("silence", model))
        for kind in INCIDENT_KINDS:
            pipe.get(paging.incident_key(model, kind))
    replies = iter(await pipe.execute())
    # the newest buckets often have no outcomes yet (labels come later): read twice the
    # trend's length and keep the last buckets with outcomes
    tails = await health.series_tails(models, 2 * TREND_POINTS)
    rows: list[dict[str, Any]] = []
    for model in models:
        snapshot = {_text(k): _text(v) for k, v in next(replies).items()}
        predictions = next(replies)
        silence = next(replies)
        incidents: dict[str, str] = {}
        for kind in INCIDENT_KINDS:
            key = _maybe_text(next(replies))
            if key is not None:
                incidents[kind] = key
        rows.append(
            {
                "model": model,
                "snapshot": snapshot,
                "predictions": predictions,
                "trend": tuple(
                    [r for p in tails[model] if (r := p.error_rate) is not None][-TREND_POINTS:]
                ),
                "silence": silence,
                "incidents": incidents,
            }
        )

    # the severity of an incident is that of the alert its page led with (the most severe
    # of the page; a more severe alert pages again, under a new incident key)
    openers = sorted(
        {a for row in rows for k in row["incidents"].values() if (a := _opener(k)) is not None}
    )
    severities: dict[str, str] = {}
    if openers:
        pipe = redis.pipeline(transaction=False)
        for alert_id in openers:
            pipe.get(paging.key("alert", alert_id))
        for alert_id, raw in zip(openers, await pipe.execute(), strict=True):
            severity = _severity(raw)
            if severity is not None:
                severities[alert_id] = severity

    statuses = [
        _status(row, seen.get(row["model"]), owners.get(row["model"]), severities, now)
        for row in rows
        if not (fleet_row and row["model"] == FLEET and not row["incidents"])
    ]
    return worst_first(statuses)


def _status(
    row: Mapping[str, Any],
    last_seen_ms: int | None,
    owner: Owner | None,
    severities: Mapping[str, str],
    now_ms: int,
) -> ModelStatus:
    snap: Mapping[str, str] = row["snapshot"]
    model = row["model"]
    # no owner, or an unreadable record (the notifier pages the fallback for both), of a
    # model seen in traffic; a model only in the registry is no orphan
    orphan = owner is None and last_seen_ms is not None
    incidents: Mapping[str, str] = row["incidents"]
    kinds = tuple(incidents)
    openers = tuple(_opener(incidents[k]) or "" for k in kinds)
    # an incident whose opening alert is no longer remembered counts as a warning
    open_severities = tuple(severities.get(a, "warning") for a in openers)
    silent = snap.get("silent") == "1"
    until = _int(row["silence"])
    predictions = _int(row["predictions"])
    if predictions is None:
        predictions = _int(snap.get("predictions_seen")) or 0
    return ModelStatus(
        model_id=model,
        owner=None if owner is None else owner.owner,
        runbook=None if owner is None else owner.runbook,
        orphan=orphan,
        model_version=snap.get("model_version") or None,
        last_prediction_ms=_int(snap.get("last_prediction_ms")) or None,
        label_coverage=_float(snap.get("label_coverage")),
        error_rate=_float(snap.get("recent_error_rate")),
        baseline_error_rate=_float(snap.get("error_rate")),
        outcomes=_int(snap.get("outcomes")) or 0,
        predictions=predictions,
        open_alerts=kinds,
        silenced_until_ms=until if until is not None and until > now_ms else None,
        silent=silent,
        state=model_state(
            orphan=orphan, open_severities=open_severities, silent=silent, seen=bool(snap)
        ),
        open_alert_ids=openers,
        open_severities=open_severities,
        last_seen_ms=last_seen_ms,
        last_alert_id=snap.get("last_alert_id") or None,
        last_alert_kind=snap.get("last_alert_kind") or None,
        trend=row["trend"],
    )


def _owner(raw: bytes | str) -> Owner | None:
    """The registered owner, or None for a record that cannot be read (the notifier pages
    the fallback for it, so it is shown as an orphan)."""
    try:
        return Owner.from_json(raw)
    except (WatchkeeperError, ValueError, TypeError, KeyError):
        return None


def _opener(dedup_key: str) -> str | None:
    """The alert an incident's page led with: its dedup key is ``watchkeeper-<alert_id>``
    (streams.contract.notification.Notification)."""
    alert_id = dedup_key.removeprefix("watchkeeper-")
    return alert_id if alert_id != dedup_key and alert_id else None


def _severity(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        alert = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    severity = alert.get("severity") if isinstance(alert, dict) else None
    return severity if isinstance(severity, str) else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _maybe_text(value: Any) -> str | None:
    return None if value is None else _text(value) or None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(float(_text(value)))
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None
