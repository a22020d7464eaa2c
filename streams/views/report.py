"""The maintenance scorecard: per owner and per model, who was watching and how well,
over a window (``--since``, a week by default).

Built from three views read once each (:func:`build_report` is pure, so tests construct
its inputs): the fleet (:func:`~streams.views.fleet.fleet_status`: owner, error now
against baseline, label coverage, open incidents, orphans), the alert history within the
window (:func:`~streams.views.history.alert_history`: what was paged, who acknowledged
it and when) and the owner registry (since when each owner is on record). Overdue
maintenance comes from :mod:`streams.store.maintenance` when that module is installed.

What each figure means:

- incidents: one per (model, incident kind) that the notifier paged within the window
  or that is open now; ``open`` if open now, else ``resolved``. An improvement belongs
  to its degradation's incident.
- time to acknowledge: ``acked_at - detected_at`` of the paged firing alerts that were
  acknowledged (median); ``unacked`` counts the paged ones nobody acknowledged.
- versions shipped: the distinct ``model_version`` values of the window's
  ``version_changed`` alerts when the model has any, else of all its alerts.
- watched by: the registered owner since its record was written, who last confirmed
  the ownership (``watchkeeper owners confirm``) and everyone who acknowledged a page,
  with when. Nobody watches an orphan.

Models without an owner come first, under "nobody", orphans (seen in traffic) first.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from streams.contract.alerts import FLEET
from streams.errors import ConfigError
from streams.settings import Settings
from streams.views.fleet import INCIDENT_KINDS, ModelStatus, fleet_status
from streams.views.history import AlertEntry, alert_history

__all__ = [
    "NOBODY",
    "VERSION_CHANGED",
    "ModelCard",
    "OverdueItem",
    "Report",
    "Scorecard",
    "Watch",
    "build_report",
    "read_overdue",
    "read_report",
]

NOBODY = "nobody"
"""The scorecard of models without a registered owner."""
VERSION_CHANGED = "version_changed"
IMPROVEMENT, DEGRADATION = "performance_improvement", "performance_degradation"
OPENING_STATES = frozenset({"paged", "sending", "held_back", "dead_lettered"})
"""Page states of a firing alert whose decision was to page: it opened an incident."""


@dataclass(frozen=True)
class OverdueItem:
    """A maintenance task past its date (:mod:`streams.store.maintenance`'s ``Overdue``)."""

    model_id: str
    owner: str | None
    reason: str
    since_ms: int | None
    message: str


@dataclass(frozen=True)
class Watch:
    """Someone watching a model: its ``owner`` on record since ``at_ms``, the person who
    ``confirmed`` the ownership at ``at_ms`` (``watchkeeper owners confirm``), or a person
    who ``acked`` one of its pages at ``at_ms``."""

    name: str
    role: str  # "owner" | "confirmed" | "acked"
    at_ms: int | None


@dataclass(frozen=True)
class Incident:
    """One (model, kind) incident within the window."""

    kind: str
    state: str  # "open" | "resolved"
    opened_ms: int | None  # first paged alert in the window (None: opened before it)
    resolved_ms: int | None  # last resolving alert in the window


@dataclass(frozen=True)
class ModelCard:
    """One model's line of its owner's scorecard."""

    model_id: str
    owner: str | None
    orphan: bool
    owner_since_ms: int | None
    model_version: str | None
    error_rate: float | None
    baseline_error_rate: float | None
    label_coverage: float | None
    alerts: int  # firing alerts detected in the window (any severity)
    incidents: tuple[Incident, ...]
    pages: int  # firing alerts that were paged
    ack_seconds: tuple[float, ...]  # time to acknowledge of each acked page
    unacked: int
    versions: tuple[str, ...]  # shipped in the window, oldest first
    overdue: tuple[OverdueItem, ...]
    watched_by: tuple[Watch, ...]

    @property
    def open_incidents(self) -> int:
        return sum(1 for i in self.incidents if i.state == "open")

    @property
    def resolved_incidents(self) -> int:
        return sum(1 for i in self.incidents if i.state == "resolved")

    @property
    def ack_median_s(self) -> float | None:
        return statistics.median(self.ack_seconds) if self.ack_seconds else None

    def to_json(self) -> dict[str, Any]:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        data["open_incidents"] = self.open_incidents
        data["resolved_incidents"] = self.resolved_incidents
        data["ack_median_s"] = self.ack_median_s
        return data


@dataclass(frozen=True)
class Totals:
    """An owner's figures over their models' cards."""

    models: int
    orphans: int
    open_incidents: int
    resolved_incidents: int
    pages: int
    unacked: int
    ack_median_s: float | None
    versions_shipped: int
    overdue: int
    min_label_coverage: float | None


@dataclass(frozen=True)
class Scorecard:
    """One owner's models (``owner`` is :data:`NOBODY` for models nobody owns)."""

    owner: str
    models: tuple[ModelCard, ...]

    def totals(self) -> Totals:
        ms = self.models
        acks = [s for m in ms for s in m.ack_seconds]
        coverage = [m.label_coverage for m in ms if m.label_coverage is not None]
        return Totals(
            models=len(ms),
            orphans=sum(m.orphan for m in ms),
            open_incidents=sum(m.open_incidents for m in ms),
            resolved_incidents=sum(m.resolved_incidents for m in ms),
            pages=sum(m.pages for m in ms),
            unacked=sum(m.unacked for m in ms),
            ack_median_s=statistics.median(acks) if acks else None,
            versions_shipped=sum(len(m.versions) for m in ms),
            overdue=sum(len(m.overdue) for m in ms),
            min_label_coverage=min(coverage) if coverage else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "totals": asdict(self.totals()),
            "models": [m.to_json() for m in self.models],
        }


@dataclass(frozen=True)
class Report:
    """Every scorecard over ``[since_ms, now_ms]``, nobody's first, then by owner."""

    since_ms: int
    now_ms: int
    scorecards: tuple[Scorecard, ...]
    notes: tuple[str, ...] = field(default=())  # what could not be read, said once

    def for_owner(self, owner: str) -> Report:
        """Only ``owner``'s scorecard; ConfigError naming the owners there are."""
        chosen = tuple(s for s in self.scorecards if s.owner == owner)
        if not chosen:
            known = ", ".join(s.owner for s in self.scorecards) or "none"
            raise ConfigError(f"--owner {owner!r}: no such owner (owners: {known})")
        return Report(self.since_ms, self.now_ms, chosen, self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "since_ms": self.since_ms,
            "now_ms": self.now_ms,
            "notes": list(self.notes),
            "scorecards": [s.to_json() for s in self.scorecards],
        }


def build_report(
    models: Sequence[ModelStatus],
    entries: Iterable[AlertEntry],
    *,
    since_ms: int,
    now_ms: int,
    owner_since: Mapping[str, int] | None = None,
    confirmed: Mapping[str, tuple[str, int]] | None = None,
    overdue: Iterable[Any] = (),
    notes: Sequence[str] = (),
) -> Report:
    """The report from the views' values (the module docstring says what each figure is).

    ``entries`` are the window's alerts (older ones are ignored); ``owner_since`` maps a
    model to its owner record's ``updated_at_ms``, ``confirmed`` to who last confirmed the
    ownership and when; ``overdue`` holds objects with the fields of :class:`OverdueItem`."""
    since_of = owner_since or {}
    confirmed_of = confirmed or {}
    window = [e for e in entries if (e.detected_at_ms or 0) >= since_ms]
    by_model: dict[str, list[AlertEntry]] = {}
    for e in window:
        by_model.setdefault(str(e.alert["model_id"]), []).append(e)
    late: dict[str, list[OverdueItem]] = {}
    for o in overdue:
        item = OverdueItem(
            str(o.model_id), o.owner, str(o.reason), o.since_ms, str(o.message)
        )  # fmt: skip
        late.setdefault(item.model_id, []).append(item)

    cards = [
        _card(
            m,
            by_model.get(m.model_id, []),
            since_of.get(m.model_id),
            confirmed_of.get(m.model_id),
            late.pop(m.model_id, []),
        )
        for m in models
    ]
    # overdue items of models the fleet does not list (their keys expired): still shown
    for model_id, items in sorted(late.items()):
        cards.append(_bare_card(model_id, items))

    groups: dict[str, list[ModelCard]] = {}
    for card in cards:
        groups.setdefault(card.owner or NOBODY, []).append(card)
    nobody = groups.pop(NOBODY, [])
    nobody.sort(key=lambda c: 0 if c.orphan else 1)  # stable: fleet order within
    ordered = ([Scorecard(NOBODY, tuple(nobody))] if nobody else []) + [
        Scorecard(name, tuple(groups[name])) for name in sorted(groups, key=str.casefold)
    ]
    return Report(since_ms, now_ms, tuple(ordered), tuple(notes))


def _incident_kind(alert: Mapping[str, Any]) -> str:
    return DEGRADATION if alert.get("kind") == IMPROVEMENT else str(alert.get("kind"))


def _resolving(alert: Mapping[str, Any]) -> bool:
    return alert.get("kind") == IMPROVEMENT or alert.get("status") == "resolved"


def _version(alert: Mapping[str, Any]) -> Any:
    """The version an alert is about: a version_changed alert's new version (``after``),
    else its ``model_version``."""
    after = alert.get("after")
    if alert.get("kind") == VERSION_CHANGED and isinstance(after, Mapping):
        return after.get("model_version") or alert.get("model_version")
    return alert.get("model_version")


def _card(
    m: ModelStatus,
    entries: Sequence[AlertEntry],
    owner_since_ms: int | None,
    confirmed: tuple[str, int] | None,
    overdue: Sequence[OverdueItem],
) -> ModelCard:
    oldest_first = sorted(entries, key=lambda e: e.detected_at_ms or 0)
    firing = [e for e in oldest_first if not _resolving(e.alert)]
    opened: dict[str, int | None] = {}
    resolved: dict[str, int | None] = {}
    for e in oldest_first:
        kind = _incident_kind(e.alert)
        if kind not in INCIDENT_KINDS:
            continue
        if _resolving(e.alert):
            if e.page_state not in ("info", "no_record"):  # it closed an open incident
                resolved[kind] = e.detected_at_ms
        elif e.page_state in OPENING_STATES:
            opened.setdefault(kind, e.detected_at_ms)
    open_now = set(m.open_alerts)
    incidents = tuple(
        Incident(
            kind=kind,
            state="open" if kind in open_now else "resolved",
            opened_ms=opened.get(kind),
            resolved_ms=None if kind in open_now else resolved.get(kind),
        )
        for kind in sorted(open_now | opened.keys() | resolved.keys())
    )
    paged = [e for e in firing if e.paged]
    acks = [e for e in paged if e.acked_at_ms is not None]
    ack_seconds = tuple(
        max(0.0, ((e.acked_at_ms or 0) - (e.detected_at_ms or e.paged_at_ms or 0)) / 1000)
        for e in acks
    )
    changes = [e for e in oldest_first if e.alert.get("kind") == VERSION_CHANGED]
    versions = tuple(
        dict.fromkeys(str(v) for e in (changes or oldest_first) if (v := _version(e.alert)))
    )
    watched: list[Watch] = []
    if m.owner is not None:
        watched.append(Watch(m.owner, "owner", owner_since_ms))
        if confirmed is not None:
            watched.append(Watch(confirmed[0], "confirmed", confirmed[1]))
    for e in sorted(acks, key=lambda e: e.acked_at_ms or 0):
        watched.append(Watch(str(e.acked_by), "acked", e.acked_at_ms))
    return ModelCard(
        model_id=m.model_id,
        owner=m.owner,
        orphan=m.orphan,
        owner_since_ms=owner_since_ms if m.owner is not None else None,
        model_version=m.model_version,
        error_rate=m.error_rate,
        baseline_error_rate=m.baseline_error_rate,
        label_coverage=m.label_coverage,
        alerts=len(firing),
        incidents=incidents,
        pages=len(paged),
        ack_seconds=ack_seconds,
        unacked=len(paged) - len(acks),
        versions=versions,
        overdue=tuple(overdue),
        watched_by=tuple(watched),
    )


def _bare_card(model_id: str, overdue: Sequence[OverdueItem]) -> ModelCard:
    owner = next((o.owner for o in overdue if o.owner), None)
    return ModelCard(
        model_id=model_id,
        owner=owner,
        orphan=False,
        owner_since_ms=None,
        model_version=None,
        error_rate=None,
        baseline_error_rate=None,
        label_coverage=None,
        alerts=0,
        incidents=(),
        pages=0,
        ack_seconds=(),
        unacked=0,
        versions=(),
        overdue=tuple(overdue),
        watched_by=(Watch(owner, "owner", None),) if owner else (),
    )


# --- reading ------------------------------------------------------------------------------------


async def read_overdue(redis: Redis, settings: Settings, now_ms: int) -> list[Any]:
    """Overdue items from :mod:`streams.store.maintenance`, or none while that module is
    not installed."""
    try:
        maintenance = importlib.import_module("streams.store.maintenance")
    except ImportError:
        return []
    found = await maintenance.overdue(redis, settings, now_ms)
    return list(found)


async def _owner_records(
    redis: Redis, settings: Settings
) -> tuple[dict[str, int], dict[str, tuple[str, int]]]:
    """Per model, its owner record's ``updated_at_ms``, and who confirmed the ownership
    when (records that do not read are left out: the fleet shows those as nobody's)."""
    raw = await redis.hgetall(f"{settings.redis_prefix}owners")
    since: dict[str, int] = {}
    confirmed: dict[str, tuple[str, int]] = {}
    for key, value in raw.items():
        model = key.decode() if isinstance(key, bytes) else str(key)
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        stamp, at, by = (
            record.get(k) for k in ("updated_at_ms", "confirmed_at_ms", "confirmed_by")
        )
        if (stamp_ms := _ms(stamp)) is not None:
            since[model] = stamp_ms
        if (at_ms := _ms(at)) is not None and isinstance(by, str) and by:
            confirmed[model] = (by, at_ms)
    return since, confirmed


def _ms(value: Any) -> int | None:
    """Epoch ms as a record holds them, or None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return int(value) if ok else None


async def read_report(
    redis: Redis, settings: Settings, *, since_ms: int, now_ms: int | None = None
) -> Report:
    """The whole report from Redis and the alerts topic."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    models = await fleet_status(redis, settings, now_ms=now)
    entries = await alert_history(settings, redis, since_ms=since_ms)
    owner_since, confirmed = await _owner_records(redis, settings)
    overdue = await read_overdue(redis, settings, now)
    notes = []
    if models and not await redis.exists(f"{settings.redis_prefix}notify:stats"):
        notes.append(
            "the notifier has recorded nothing under this Redis prefix: no page, ack or "
            "incident shows (is `watchkeeper notify` running?)"
        )
    return build_report(
        [m for m in models if m.model_id != FLEET or m.open_alerts],
        entries,
        since_ms=since_ms,
        now_ms=now,
        owner_since=owner_since,
        confirmed=confirmed,
        overdue=overdue,
        notes=notes,
    )
