"""Alert events built from detector changes; the alert_id is derived, never random.

The id hashes (model, kind, detector, outcome index): the same outcomes in the same order
give the same id in the live stream, after a restart that re-processes a batch, and in
replay, so consumers can deduplicate on it.
"""

from __future__ import annotations

import hashlib
import shlex
from datetime import UTC, datetime
from typing import Any, Literal

from detectors.base import Change, error_severity
from detectors.signal import Signal

__all__ = [
    "ALERT_SCHEMA_VERSION",
    "AlertKind",
    "LABEL_FREE_KINDS",
    "LIFECYCLE_KINDS",
    "alert_id",
    "build_alert",
    "build_signal_alert",
    "build_maintenance_alert",
    "build_model_limit_alert",
    "build_orphan_alert",
    "owner_hint",
    "rfc3339_ms",
    "severity_of",
]

ALERT_SCHEMA_VERSION = 1
AlertKind = Literal[
    "performance_degradation",
    "performance_improvement",
    "prediction_drift",
    "labels_missing",
    "model_silent",
    "input_quality",
    "estimated_degradation",
    "feature_drift",
    "schema_change",
    "version_changed",
    "version_regression",
    "orphaned_model",
    "model_limit",
    "maintenance_overdue",
]
Severity = Literal["info", "warning", "critical"]
LABEL_FREE_KINDS = (
    "prediction_drift",
    "labels_missing",
    "model_silent",
    "input_quality",
    "estimated_degradation",
    "feature_drift",
    "schema_change",
)
"""The kinds the label-free and liveness signals raise (:mod:`detectors.signals`; the
input signals, ``feature_drift`` and ``schema_change``, in :mod:`detectors.features`)."""
LIFECYCLE_KINDS = ("version_changed", "version_regression")
"""The kinds of the model lifecycle (:mod:`detectors.versions`): a new version serving
(info), a new version worse than the previous one (pages, with a rollback suggestion)."""


def alert_id(model_id: str, kind: str, detector: str, index: int) -> str:
    """Stable id of one detection."""
    digest = hashlib.sha256(f"{model_id}\x1f{kind}\x1f{detector}\x1f{index}".encode())
    return digest.hexdigest()[:32]


def rfc3339_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 UTC string with a Z."""
    stamp = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def severity_of(change: Change) -> Severity:
    """Critical when the error rate rose by 10 points or at least doubled."""
    if change.direction != "increase":
        return "info"
    return error_severity(change.mean_before, change.mean_after)  # type: ignore[return-value]


def build_alert(
    change: Change,
    *,
    model_id: str,
    model_version: str | None,
    detected_at: datetime,
    config_fingerprint: str,
    versions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The alert event for one change (contract in DESIGN.md, schema_version 1).

    ``versions`` (``before``, ``after``, ``changed_at_ms``): the model's version changed
    shortly before the rise; the alert names both, so a deliberate version change does
    not page as a plain degradation. The id is the same with or without it."""
    kind = (
        "performance_degradation" if change.direction == "increase" else "performance_improvement"
    )
    alert = {
        "schema_version": ALERT_SCHEMA_VERSION,
        "alert_id": alert_id(model_id, kind, change.detector, change.index),
        "kind": kind,
        "model_id": model_id,
        "model_version": model_version,
        "detector": change.detector,
        "signal": "error",
        "direction": change.direction,
        "severity": severity_of(change),
        "event_time": rfc3339_ms(change.event_time_ms),
        "event_time_ms": change.event_time_ms,
        "detected_at": detected_at.astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "outcome_index": change.index,
        "before": {"error_rate": round(change.mean_before, 6), "count": change.n_before},
        "after": {"error_rate": round(change.mean_after, 6), "count": change.n_after},
        "config_fingerprint": config_fingerprint,
        "status": "firing",
        "owner": None,
        "runbook": None,
    }
    if versions is not None:
        old, new = versions["before"], versions["after"]
        changed_at = rfc3339_ms(versions["changed_at_ms"])
        alert["versions"] = {"before": old, "after": new, "changed_at": changed_at}
        alert["message"] = (
            f"the error rate rose from {change.mean_before:.1%} to {change.mean_after:.1%} "
            f"after model_version {new} replaced {old} (first outcome of a prediction at "
            f"{changed_at}): compare the versions, or roll back to {old}"
        )
    return alert


def build_signal_alert(
    signal: Signal,
    *,
    model_id: str,
    model_version: str | None,
    detected_at: datetime,
    config_fingerprint: str,
) -> dict[str, Any]:
    """The alert event of a label-free or liveness signal (same schema as
    :func:`build_alert`; ``status`` "resolved" closes the incident its kind opened)."""
    detector = f"{signal.detector}:{signal.signal}"
    key = detector if signal.status == "firing" else f"{detector}:resolved"
    return {
        "schema_version": ALERT_SCHEMA_VERSION,
        "alert_id": alert_id(model_id, signal.kind, key, signal.index),
        "kind": signal.kind,
        "model_id": model_id,
        "model_version": model_version,
        "detector": signal.detector,
        "signal": signal.signal,
        "direction": signal.direction,
        "severity": signal.severity,
        "event_time": rfc3339_ms(signal.event_time_ms),
        "event_time_ms": signal.event_time_ms,
        "detected_at": detected_at.astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "outcome_index": None,
        "before": signal.before,
        "after": signal.after,
        "config_fingerprint": config_fingerprint,
        "status": signal.status,
        "owner": None,
        "runbook": None,
        "message": signal.message,
    }


def _wall_clock_alert(
    model_id: str,
    kind: AlertKind,
    *,
    detector: str,
    signal: str,
    severity: Severity,
    detected_at: datetime,
    window_s: float,
    message: str,
    status: str = "firing",
) -> dict[str, Any]:
    """An alert raised on the wall clock, not by the detectors. Its id hashes the model,
    the kind and the window it was raised in, so workers that raise it in the same window
    raise the same alert (the notifier pages it once)."""
    at_ms = int(detected_at.timestamp() * 1000)
    window = at_ms // max(int(window_s * 1000), 1)
    stamp = rfc3339_ms(at_ms)
    return {
        "schema_version": ALERT_SCHEMA_VERSION,
        "alert_id": alert_id(
            model_id, kind, detector if status == "firing" else f"{detector}:resolved", window
        ),
        "kind": kind,
        "model_id": model_id,
        "model_version": None,
        "detector": detector,
        "signal": signal,
        "direction": None,
        "severity": severity,
        "event_time": stamp,
        "event_time_ms": at_ms,
        "detected_at": stamp,
        "outcome_index": None,
        "before": None,
        "after": None,
        "config_fingerprint": None,
        "status": status,
        "owner": None,
        "runbook": None,
        "message": message,
    }


def build_orphan_alert(
    model_id: str, *, detected_at: datetime, cooldown_s: float, message: str = ""
) -> dict[str, Any]:
    """The ``orphaned_model`` alert: a model in traffic that nobody owns (one per model
    per cooldown window)."""
    return _wall_clock_alert(
        model_id,
        "orphaned_model",
        detector="registry",
        signal="owner",
        severity="warning",
        detected_at=detected_at,
        window_s=cooldown_s,
        message=message
        or (
            f"model {model_id!r} is serving predictions but has no owner; register one with "
            f"`{owner_hint(model_id)}`"
        ),
    )


def owner_hint(model_id: str) -> str:
    """The command that registers an owner for ``model_id``, safe to paste into a shell:
    the id comes from event producers, so it is quoted (``$(...)`` stays text)."""
    return (
        f"watchkeeper owners set {shlex.quote(model_id)} --owner NAME --channel SPEC --runbook URL"
    )


FLEET = "*"
"""The model_id of alerts about the fleet rather than one model (no owner: they page the
fallback channel)."""


def build_model_limit_alert(
    refused: list[str], *, limit: int, detected_at: datetime, window_s: float
) -> dict[str, Any]:
    """``model_limit``: predictions of models beyond ``max_models`` are being refused.
    One per window for the whole fleet, whichever workers and partitions refuse."""
    shown = ", ".join(repr(m) for m in sorted(refused)[:10])
    return _wall_clock_alert(
        FLEET,
        "model_limit",
        detector="admission",
        signal="cardinality",
        severity="critical",
        detected_at=detected_at,
        window_s=window_s,
        message=(
            f"predictions of models beyond the cap of {limit} per partition (max_models) are "
            f"dead-lettered as model_limit, e.g. {shown}; a producer may be sending made-up "
            "model ids, or the fleet outgrew the cap (raise WATCHKEEPER_MAX_MODELS)"
        ),
    )


def build_stream_silent_alert(
    *, detected_at: datetime, quiet_s: float, window_s: float, resolved: bool = False
) -> dict[str, Any]:
    """``model_silent`` for the whole fleet: no prediction reached the predictions topic
    for ``quiet_s`` of wall-clock time. Live only: a replay has no wall clock to miss."""
    if resolved:
        message = f"predictions are arriving again after {quiet_s:.0f} s without any"
    else:
        message = (
            f"no prediction reached the predictions topic for {quiet_s:.0f} s: every serving "
            "system stopped publishing, or they cannot reach the broker"
        )
    return _wall_clock_alert(
        FLEET,
        "model_silent",
        detector="wall_clock",
        signal="stream",
        severity="info" if resolved else "critical",
        detected_at=detected_at,
        window_s=window_s,
        message=message,
        status="resolved" if resolved else "firing",
    )


def build_maintenance_alert(
    model_id: str,
    *,
    reason: str,
    since_ms: int,
    period_index: int,
    detected_at: datetime,
    message: str,
    owner: str | None = None,
    runbook: str | None = None,
) -> dict[str, Any]:
    """``maintenance_overdue`` (severity info): ownership not confirmed, or a version
    not retrained, for longer than the owner's period (streams.store.maintenance).

    The id hashes the model, the reason, what the period counts from and the period's
    index, so every worker raises the same alert once per period, and a confirmation or
    a new version starts a new series."""
    alert = _wall_clock_alert(
        model_id,
        "maintenance_overdue",
        detector="maintenance",
        signal=reason,
        severity="info",
        detected_at=detected_at,
        window_s=1.0,
        message=message,
    )
    alert["alert_id"] = alert_id(
        model_id, "maintenance_overdue", f"maintenance:{reason}:{since_ms}", period_index
    )
    alert["owner"], alert["runbook"] = owner, runbook
    return alert
