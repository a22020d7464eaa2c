"""The owner registry: who answers for each deployed model, and how to reach them.

A model nobody owns degrades unnoticed, so every model gets an accountable owner, the
channels that page them, a runbook, and optionally an escalation path for pages nobody
acknowledges. The notifier reads the registry to route alerts; models seen in traffic
without an entry are orphans (:func:`find_orphans`) and go to the fallback channels.

One Redis hash holds it all, so the whole registry is one HGETALL, the owners of a batch
of alerts one HMGET, and an import one MULTI that lands completely or not at all:

    {prefix}owners    hash: model_id -> Owner JSON (channels as KIND:TARGET specs)

Owners are declared in a YAML file (``watchkeeper owners import``) or one at a time with
``watchkeeper owners set``. Every entry is checked before anything is written, and all
problems are reported together, each naming its model and field::

    owners:
      fraud-eu:
        owner: team-fraud
        channels: ["slack:https://hooks.slack.com/services/T/B/X"]
        runbook: https://wiki.example.com/runbooks/fraud-eu
        escalate_after: 30m                                # optional
        escalation_channels: ["email:head-of-fraud@example.com"]  # required with escalate_after
        confirm_every: 90d     # optional (default 90d): how often the owner must confirm
        retrain_every: 30d     # optional: how long one model version may serve

Ownership goes stale silently (people move on), so an owner confirms it with ``watchkeeper
owners confirm`` (:meth:`OwnerRegistry.confirm`), and the worker raises
``maintenance_overdue`` when that is older than ``confirm_every`` (streams.store.maintenance).
Replacing an entry keeps its confirmation unless the owner's name changes.
"""

from __future__ import annotations

import builtins
import difflib
import math
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
import yaml
from redis.asyncio import Redis
from redis.exceptions import WatchError

from streams.contract.ids import id_problem
from streams.contract.notification import Channel, InvalidChannel, parse_channel
from streams.errors import InvalidOwner
from streams.outbound import TargetPolicy
from streams.redact import redact
from streams.settings import DAY_MS
from streams.store.health import HealthStore

__all__ = [
    "DEFAULT_CONFIRM_EVERY_S",
    "OWNER_FILE_KEYS",
    "Orphan",
    "Owner",
    "OwnerProblem",
    "OwnerRegistry",
    "find_orphans",
    "format_duration",
    "load_owners_file",
    "parse_duration",
    "policy_problems",
]

OWNER_FILE_KEYS = (
    "owner",
    "channels",
    "runbook",
    "escalate_after",
    "escalation_channels",
    "confirm_every",
    "retrain_every",
)
DEFAULT_CONFIRM_EVERY_S = 90 * 86_400.0
"""How often an owner confirms ownership unless their entry says otherwise."""

_NUMBER = r"\d+(?:\.\d+)?"
_SECONDS = re.compile(_NUMBER)
_DURATION = re.compile(rf"(?:({_NUMBER})d)?(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?")
_UNITS = ((86_400, "d"), (3_600, "h"), (60, "m"), (1, "s"))


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``30s``, ``30m``, ``2h``, ``1d`` or a combination like ``1h30m``.

    Units go largest first, each at most once, so a typo (``30mm``, ``5m1h``) is an error
    rather than a guess. Zero parses: whether it makes sense is the caller's decision.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration {text!r}: expected text such as 90, 30s, 30m, 2h, 1d, 1h30m")
    compact = text.strip().lower()
    if _SECONDS.fullmatch(compact):
        seconds = float(compact)
    else:
        match = _DURATION.fullmatch(compact)
        if match is None or not any(match.groups()):
            raise ValueError(
                f"duration {text!r}: expected seconds or a combination of d, h, m, s, "
                "largest first, such as 90, 30s, 30m, 2h, 1d, 1h30m"
            )
        seconds = sum(
            float(value) * unit
            for value, (unit, _) in zip(match.groups(), _UNITS, strict=True)
            if value is not None
        )
    if not math.isfinite(seconds):
        raise ValueError(f"duration {text!r} is too large")
    return seconds


def format_duration(seconds: float) -> str:
    """The form people write, which :func:`parse_duration` reads back: 5400 -> ``1h30m``."""
    if seconds != int(seconds) or seconds < 0:
        return f"{seconds:g}s"
    rest = int(seconds)
    parts = []
    for unit, suffix in _UNITS:
        count, rest = divmod(rest, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"


class OwnerProblem(NamedTuple):
    """One reason an owner entry was refused; ``model_id`` is None for file-level problems."""

    model_id: str | None
    field: str
    reason: str

    def __str__(self) -> str:
        where = "" if self.model_id is None else f"model {self.model_id!r}: "
        return f"{where}{self.field}: {self.reason}"


def _invalid(header: str, problems: builtins.list[OwnerProblem]) -> InvalidOwner:
    if len(problems) == 1:
        return InvalidOwner(f"{header}: {problems[0]}", tuple(problems))
    lines = "\n".join(f"  {p}" for p in problems)
    return InvalidOwner(f"{header} ({len(problems)} problems):\n{lines}", tuple(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    """Who answers for one model, and how they are paged.

    Validated on construction (every problem at once), so an ``Owner`` that exists can be
    delivered to. :meth:`from_specs` builds one from what a person types.
    """

    model_id: str
    owner: str
    channels: tuple[Channel, ...]
    runbook: str
    escalate_after_s: float | None = None
    escalation_channels: tuple[Channel, ...] = ()
    updated_at_ms: int
    confirm_every_s: float = DEFAULT_CONFIRM_EVERY_S
    retrain_every_s: float | None = None
    confirmed_at_ms: int | None = None
    confirmed_by: str | None = None

    def __post_init__(self) -> None:
        entry = {
            "owner": self.owner,
            "channels": self.channels,
            "runbook": self.runbook,
            "escalate_after": self.escalate_after_s,
            "escalation_channels": self.escalation_channels,
            "confirm_every": self.confirm_every_s,
            "retrain_every": self.retrain_every_s,
        }
        clean, problems = _check_entry(self.model_id, entry, esc_field="escalate_after_s")
        for name in ("escalate_after_s", "confirm_every_s", "retrain_every_s"):
            if isinstance(getattr(self, name), str):
                problems.append(OwnerProblem(self.model_id, name, "must be a number of seconds"))
        problems += _confirmation_problems(self.model_id, self.confirmed_at_ms, self.confirmed_by)
        stamp = self.updated_at_ms
        if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp < 0:
            problems.append(
                OwnerProblem(
                    self.model_id, "updated_at_ms", f"must be epoch ms >= 0, got {stamp!r}"
                )
            )
        if problems:
            raise _invalid("invalid owner", problems)
        # Normalised forms: trimmed name, parsed channels without duplicates, float seconds.
        for name in (
            "owner",
            "channels",
            "escalation_channels",
            "escalate_after_s",
            "confirm_every_s",
            "retrain_every_s",
        ):
            object.__setattr__(self, name, clean[name])
        if self.confirmed_by is not None:
            object.__setattr__(self, "confirmed_by", self.confirmed_by.strip())

    @classmethod
    def from_specs(
        cls,
        model_id: str,
        *,
        owner: str,
        channels: Iterable[str | Channel],
        runbook: str,
        escalate_after: str | float | None = None,
        escalation_channels: Iterable[str | Channel] = (),
        confirm_every: str | float | None = None,
        retrain_every: str | float | None = None,
        updated_at_ms: int | None = None,
    ) -> Owner:
        """From what a person types (channel specs, ``30m``); ``updated_at_ms`` defaults to now."""
        entry: dict[str, Any] = {
            "owner": owner,
            "channels": builtins.list(channels),
            "runbook": runbook,
            "escalate_after": escalate_after,
            "escalation_channels": builtins.list(escalation_channels),
            "confirm_every": confirm_every,
            "retrain_every": retrain_every,
        }
        return _owner_or_problems(model_id, entry, updated_at_ms, "invalid owner")

    @property
    def confirmed_since_ms(self) -> int:
        """Since when ownership counts as confirmed: the last confirmation, or, never
        confirmed, the time the entry was written (registering is the first claim)."""
        return self.updated_at_ms if self.confirmed_at_ms is None else self.confirmed_at_ms

    def confirmed(self, *, by: str, at_ms: int) -> Owner:
        """This entry confirmed by ``by`` at ``at_ms`` (validated like any entry)."""
        return replace(self, confirmed_at_ms=at_ms, confirmed_by=by)

    def keeping_confirmation_of(self, old: Owner | None) -> Owner:
        """This new entry with ``old``'s confirmation, when the same owner answers for the
        model: replacing channels or a runbook does not say the owner is still there, but
        it must not undo their confirmation either. A new owner starts unconfirmed."""
        if old is None or old.owner != self.owner or old.confirmed_at_ms is None:
            return self
        return replace(self, confirmed_at_ms=old.confirmed_at_ms, confirmed_by=old.confirmed_by)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "owner": self.owner,
            "channels": [str(c) for c in self.channels],
            "runbook": self.runbook,
            "escalate_after_s": self.escalate_after_s,
            "escalation_channels": [str(c) for c in self.escalation_channels],
            "updated_at_ms": self.updated_at_ms,
            "confirm_every_s": self.confirm_every_s,
            "retrain_every_s": self.retrain_every_s,
            "confirmed_at_ms": self.confirmed_at_ms,
            "confirmed_by": self.confirmed_by,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Owner:
        """The inverse of :meth:`to_dict`. Unknown keys are ignored, so a record written by a
        newer version that added a field still reads; missing optional keys take their
        defaults, so a record written before a field existed reads too."""
        entry = {
            "owner": data.get("owner"),
            "channels": data.get("channels"),
            "runbook": data.get("runbook"),
            "escalate_after": data.get("escalate_after_s"),
            "escalation_channels": data.get("escalation_channels") or [],
            "confirm_every": data.get("confirm_every_s"),
            "retrain_every": data.get("retrain_every_s"),
        }
        stamp = data.get("updated_at_ms", 0)
        owner = _owner_or_problems(data.get("model_id"), entry, stamp, "invalid owner record")
        confirmed_at, confirmed_by = data.get("confirmed_at_ms"), data.get("confirmed_by")
        if confirmed_at is None and confirmed_by is None:
            return owner
        problems = _confirmation_problems(owner.model_id, confirmed_at, confirmed_by)
        if problems:
            raise _invalid("invalid owner record", problems)
        return replace(owner, confirmed_at_ms=confirmed_at, confirmed_by=confirmed_by)

    @classmethod
    def from_json(cls, data: bytes | str) -> Owner:
        try:
            loaded = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidOwner(f"invalid owner record: not JSON ({exc})") from exc
        if not isinstance(loaded, dict):
            raise InvalidOwner(f"invalid owner record: expected a JSON object, got {loaded!r}")
        return cls.from_dict(loaded)


def _owner_or_problems(
    model_id: object, entry: Mapping[str, Any], updated_at_ms: Any, header: str
) -> Owner:
    clean, problems = _check_entry(model_id, entry, esc_field="escalate_after")
    if problems:
        raise _invalid(header, problems)
    stamp = int(time.time() * 1000) if updated_at_ms is None else updated_at_ms
    return Owner(updated_at_ms=stamp, **clean)


def _confirmation_problems(model_id: str, at_ms: object, by: object) -> builtins.list[OwnerProblem]:
    """A confirmation is a time and a name, both or neither."""
    problems = []
    if at_ms is not None and (isinstance(at_ms, bool) or not isinstance(at_ms, int) or at_ms < 0):
        problems.append(
            OwnerProblem(model_id, "confirmed_at_ms", f"must be epoch ms >= 0, got {at_ms!r}")
        )
    if by is not None and (not isinstance(by, str) or not by.strip()):
        problems.append(OwnerProblem(model_id, "confirmed_by", f"must be a name, got {by!r}"))
    if (at_ms is None) != (by is None):
        problems.append(
            OwnerProblem(model_id, "confirmed_by", "a confirmation needs both a time and a name")
        )
    return problems


Report = Callable[[str, str], None]


def _check_entry(
    model_id: object, entry: object, *, esc_field: str
) -> tuple[dict[str, Any], builtins.list[OwnerProblem]]:
    """Every problem of one raw entry (YAML, flags or a stored record), and its clean form.

    One function for all three sources, so the rules cannot drift apart. ``esc_field`` is
    the name the person wrote (``escalate_after`` in a file, ``escalate_after_s`` in code).
    """
    label = model_id if isinstance(model_id, str) else repr(model_id)
    problems: builtins.list[OwnerProblem] = []

    def bad(field: str, reason: str) -> None:
        problems.append(OwnerProblem(label, field, reason))

    if not isinstance(model_id, str):
        bad("model_id", f"must be a string, got {type(model_id).__name__} (quote it in YAML)")
    elif (problem := id_problem(model_id)) is not None:
        # the parser's grammar (streams.contract.ids): every model the worker accepts can
        # be owned, and no owner waits for a model that can never appear
        bad("model_id", problem)
    if not isinstance(entry, Mapping):
        bad("entry", f"must be a mapping with keys {', '.join(OWNER_FILE_KEYS)}")
        return {}, problems
    for key in entry:
        if key not in OWNER_FILE_KEYS:
            bad(str(key), _unknown_key(key))

    owner = entry.get("owner")
    if owner is None:
        bad("owner", "required: the person or team accountable for the model")
    elif not isinstance(owner, str) or not owner.strip():
        bad("owner", f"must be a non-empty name, got {owner!r}")
    channels = _channels(entry.get("channels"), "channels", bad, required=True)
    runbook = entry.get("runbook")
    if runbook is None:
        bad("runbook", "required: an http(s) URL of the model's runbook")
    elif not _is_http_url(runbook):
        bad("runbook", f"must be an http(s) URL, got {redact(repr(runbook))}")

    esc_raw = entry.get("escalate_after")
    escalate_after_s = None if esc_raw is None else _positive_seconds(esc_raw, esc_field, bad)
    escalation = _channels(entry.get("escalation_channels"), "escalation_channels", bad)
    has_escalation = bool(entry.get("escalation_channels"))
    if esc_raw is not None and not has_escalation:
        bad(
            "escalation_channels",
            f"required when {esc_field} is set: who is paged when nobody acknowledges",
        )
    if esc_raw is None and has_escalation:
        bad(esc_field, "required when escalation_channels are given: how long to wait first")
    # named as the person wrote them: confirm_every in a file, confirm_every_s in code
    suffix = "_s" if esc_field.endswith("_s") else ""
    confirm_raw = entry.get("confirm_every")
    confirm_every_s = (
        DEFAULT_CONFIRM_EVERY_S
        if confirm_raw is None
        else _positive_seconds(confirm_raw, "confirm_every" + suffix, bad)
    )
    retrain_raw = entry.get("retrain_every")
    retrain_every_s = (
        None
        if retrain_raw is None
        else _positive_seconds(retrain_raw, "retrain_every" + suffix, bad)
    )

    clean = {
        "model_id": model_id,
        "owner": owner.strip() if isinstance(owner, str) else owner,
        "channels": channels,
        "runbook": runbook,
        "escalate_after_s": escalate_after_s,
        "escalation_channels": escalation,
        "confirm_every_s": confirm_every_s,
        "retrain_every_s": retrain_every_s,
    }
    return clean, problems


def _unknown_key(key: object) -> str:
    close = difflib.get_close_matches(str(key), OWNER_FILE_KEYS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected {', '.join(OWNER_FILE_KEYS)}"
    return f"unknown key ({hint})"


def _channels(
    raw: object, field: str, bad: Report, *, required: bool = False
) -> tuple[Channel, ...]:
    if raw is None or (isinstance(raw, list | tuple) and not raw):
        if required:
            bad(field, "required: at least one KIND:TARGET spec, e.g. email:oncall@example.com")
        return ()
    if not isinstance(raw, list | tuple):
        bad(field, f"must be a list of KIND:TARGET specs, got {raw!r}")
        return ()
    parsed: dict[Channel, None] = {}  # ordered set: a repeated channel would page twice
    for i, item in enumerate(raw):
        spec = str(item) if isinstance(item, Channel) else item
        if not isinstance(spec, str):
            bad(f"{field}[{i}]", f"must be a KIND:TARGET string, got {item!r}")
            continue
        try:
            parsed[parse_channel(spec)] = None
        except InvalidChannel as exc:
            bad(f"{field}[{i}]", str(exc))
    return tuple(parsed)


def _positive_seconds(raw: object, field: str, bad: Report) -> float | None:
    if isinstance(raw, str):
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            bad(field, str(exc))
            return None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        bad(field, f"must be a duration such as 30m or a number of seconds, got {raw!r}")
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        bad(field, f"must be a positive duration, got {raw!r}")
        return None
    return seconds


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    url = urlsplit(value)
    return url.scheme in ("http", "https") and bool(url.hostname)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated keys: a model listed twice would silently lose one."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        if isinstance(key, Hashable):
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,  # type: ignore[arg-type]
)


def load_owners_file(path: Path, *, now_ms: int | None = None) -> builtins.list[Owner]:
    """Every owner in a YAML owners file, or :class:`InvalidOwner` listing all problems.

    Nothing is returned unless every entry is valid, which is what lets an import be all
    or nothing. ``now_ms`` stamps ``updated_at_ms`` (defaults to the wall clock).
    """
    header = f"owners file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidOwner(f"{header}: not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOwner(f"{header}: cannot be read: {exc}") from exc
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidOwner(f"{header}: invalid YAML: {exc}") from exc

    if not isinstance(doc, dict) or "owners" not in doc:
        raise InvalidOwner(f"{header}: expected a top-level 'owners:' mapping of model -> entry")
    problems = [
        OwnerProblem(None, str(key), "unknown top-level key (expected only 'owners')")
        for key in doc
        if key != "owners"
    ]
    entries = doc["owners"] or {}
    if not isinstance(entries, dict):
        problems.append(OwnerProblem(None, "owners", "must be a mapping of model -> entry"))
        entries = {}
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    owners = []
    for model_id, entry in entries.items():
        clean, found = _check_entry(model_id, entry, esc_field="escalate_after")
        problems += found
        if not found:
            owners.append(Owner(updated_at_ms=stamp, **clean))
    if problems:
        raise _invalid(header, problems)
    return owners


def policy_problems(owner: Owner, policy: TargetPolicy) -> builtins.list[OwnerProblem]:
    """Channels of ``owner`` the outbound policy refuses (streams.outbound), each
    naming the field, the redacted channel and the rule."""
    problems = []
    for field, channels in (
        ("channels", owner.channels),
        ("escalation_channels", owner.escalation_channels),
    ):
        for i, channel in enumerate(channels):
            why = policy.channel_problem(channel.kind, channel.target)
            if why is not None:
                reason = (
                    f"channel {redact(str(channel))!r} refused by the outbound policy: "
                    f"{why} ({policy.rule_text()})"
                )
                problems.append(OwnerProblem(owner.model_id, f"{field}[{i}]", reason))
    return problems


class OwnerRegistry:
    """Owners in one Redis hash, shared by the CLI, the notifier and every worker.

    With a ``policy`` (the CLI passes one built from NotifySettings), :meth:`set` and
    :meth:`import_many` refuse channels the outbound policy refuses, before writing."""

    def __init__(
        self, redis: Redis, prefix: str = "wk:", *, policy: TargetPolicy | None = None
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.key = f"{prefix}owners"
        self.policy = policy

    def _check(self, owners: Iterable[Owner], header: str) -> None:
        if self.policy is None:
            return
        problems = [p for o in owners for p in policy_problems(o, self.policy)]
        if problems:
            raise _invalid(header, problems)

    async def set(self, owner: Owner) -> bool:
        """Register or replace; True when the model had no owner before. A replacement
        keeps the confirmation of the same owner (:meth:`Owner.keeping_confirmation_of`)."""
        self._check([owner], "invalid owner")
        written = await self._merge([owner], lambda new, old: new.keeping_confirmation_of(old))
        return not written[0][1]

    async def confirm(self, model_id: str, *, by: str, now_ms: int) -> Owner | None:
        """Record that ``by`` confirmed ownership of ``model_id`` at ``now_ms``; the
        confirmed entry, or None when the model has no owner."""
        await self.get(model_id)  # an entry that no longer validates is an error, not "none"
        confirmed = await self._merge(
            [model_id], lambda _id, old: None if old is None else old.confirmed(by=by, at_ms=now_ms)
        )
        return confirmed[0][0]

    async def _merge(
        self, items: builtins.list[Any], merge: Callable[[Any, Owner | None], Owner | None]
    ) -> builtins.list[tuple[Owner | None, bool]]:
        """Read the current entries of ``items`` (owners or model ids), write what ``merge``
        makes of each, atomically against any other writer (WATCH, retried on conflict):
        a confirmation and a replacement at the same moment must not undo each other.
        Returns each written entry and whether the model had an owner before."""
        ids = [i.model_id if isinstance(i, Owner) else i for i in items]
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.key)
                    raws = await pipe.hmget(self.key, ids)
                    olds = [None if r is None else _lenient(r) for r in raws]
                    merged = [merge(i, old) for i, old in zip(items, olds, strict=True)]
                    writes: dict[Any, Any] = {
                        o.model_id: o.to_json() for o in merged if o is not None
                    }
                    pipe.multi()
                    if writes:
                        pipe.hset(self.key, mapping=writes)
                    await pipe.execute()
                except WatchError:
                    continue
                return [(o, r is not None) for o, r in zip(merged, raws, strict=True)]

    async def get(self, model_id: str) -> Owner | None:
        raw = await self.redis.hget(self.key, model_id)
        return None if raw is None else Owner.from_json(raw)

    async def get_many(self, model_ids: Iterable[str]) -> dict[str, Owner]:
        """Owners of those models that have one, in one round trip (one HMGET)."""
        ids = builtins.list(dict.fromkeys(model_ids))
        if not ids:
            return {}
        raws = await self.redis.hmget(self.key, ids)
        return {
            m: Owner.from_json(raw) for m, raw in zip(ids, raws, strict=True) if raw is not None
        }

    async def remove(self, model_id: str) -> bool:
        """True when the model had an owner."""
        return bool(await self.redis.hdel(self.key, model_id))

    async def import_many(self, owners: Iterable[Owner]) -> int:
        """Register or replace all of them in one MULTI, so readers never see half an import."""
        batch = builtins.list(owners)
        ids = [o.model_id for o in batch]
        repeated = sorted({m for m in ids if ids.count(m) > 1})
        if repeated:
            problems = [OwnerProblem(m, "model_id", "given more than once") for m in repeated]
            raise _invalid("import refused", problems)
        self._check(batch, "import refused")
        if not batch:
            return 0
        await self._merge(batch, lambda new, old: new.keeping_confirmation_of(old))
        return len(batch)

    async def list(self) -> builtins.list[Owner]:
        """Every owner, sorted by model_id."""
        raw = await self.redis.hgetall(self.key)
        return sorted((Owner.from_json(v) for v in raw.values()), key=lambda o: o.model_id)


@dataclass(frozen=True, slots=True)
class Orphan:
    """A model seen in traffic that nobody owns: its alerts go to the fallback channels."""

    model_id: str
    last_seen_ms: int
    predictions: int
    last_alert_id: str | None = None
    last_alert_kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "last_seen_ms": self.last_seen_ms,
            "predictions": self.predictions,
            "last_alert_id": self.last_alert_id,
            "last_alert_kind": self.last_alert_kind,
        }


async def find_orphans(
    redis: Redis, prefix: str = "wk:", *, days: float, now_ms: int
) -> builtins.list[Orphan]:
    """Models seen within the last ``days`` that have no owner, busiest first.

    Reads the traffic keys :class:`~streams.health.HealthStore` writes, in two round
    trips whatever the number of models. A model seen after ``now_ms`` (clock skew between
    hosts) still counts as seen.
    """
    if isinstance(days, bool) or not math.isfinite(days) or days <= 0:
        raise ValueError(f"days must be a positive number, got {days!r}")
    store = HealthStore(redis, prefix)
    since = now_ms - round(days * DAY_MS)
    pipe = redis.pipeline(transaction=False)
    pipe.zrangebyscore(store.key("models"), since, "+inf", withscores=True)
    pipe.hkeys(f"{prefix}owners")
    seen, owned_raw = await pipe.execute()
    owned = {_text(m) for m in owned_raw}
    candidates = [(_text(m), int(score)) for m, score in seen if _text(m) not in owned]
    if not candidates:
        return []

    pipe = redis.pipeline(transaction=False)
    for model, _ in candidates:
        pipe.hget(store.key("model", model), "predictions")
        pipe.hmget(store.key("health", model), ["last_alert_id", "last_alert_kind"])
    details = await pipe.execute()
    orphans = [
        Orphan(
            model_id=model,
            last_seen_ms=last_seen,
            predictions=int(predictions or 0),
            last_alert_id=None if alert_id is None else _text(alert_id),
            last_alert_kind=None if alert_kind is None else _text(alert_kind),
        )
        for (model, last_seen), predictions, (alert_id, alert_kind) in zip(
            candidates, details[0::2], details[1::2], strict=True
        )
    ]
    return sorted(orphans, key=lambda o: (-o.predictions, o.model_id))


def _lenient(raw: bytes | str) -> Owner | None:
    """A stored entry, or None when it no longer validates (it is replaced, not merged)."""
    try:
        return Owner.from_json(raw)
    except InvalidOwner:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
