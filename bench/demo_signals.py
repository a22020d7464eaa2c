"""``estimated_degradation`` on the demo's own degradations, against the label-based alert.

The demo's scenario (``watchkeeper demo``: 24 models, 3,000 predictions each over 48 h of
event time, calibrated scores, labels with a median delay of 2 h; three models degrade
halfway) runs through the replay engine in process (:class:`~streams.engine.local.
LocalTopology`, the worker's own steps), with the default detectors. Per degraded model:
the event time of the first ``estimated_degradation`` after the change, and of the first
``performance_degradation``; and every ``estimated_degradation`` raised on a model whose
error does not change (false alarms).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from bench.report import Row
from detectors.config import DetectorSettings
from streams.dev.demo import first_paging
from streams.dev.simulate import Scenario, build_scenario
from streams.engine.join_step import InputRecord
from streams.engine.local import LocalTopology
from streams.engine.rules import InputRules
from streams.settings import Settings

__all__ = ["measure", "run_engine"]

HOUR_MS = 3_600_000
_TOPICS = {"p": "predictions", "g": "ground_truth"}


def demo_scenario(quick: bool) -> Scenario:
    """The demo's scenario (``streams.dev.demo.run_demo``); six models when ``quick``."""
    models = 6 if quick else 24
    return build_scenario(
        models=models,
        predictions_per_model=3000,
        seed=7,
        degraded=3,
        labels_stop=1,
        silent=1,
        canary=1 if models >= 8 else 0,
        renamed=1 if models >= 8 else 0,
        features=True,
    )


def run_engine(scenario: Scenario, batch: int = 500) -> list[dict[str, Any]]:
    """The alerts of the scenario's events, in arrival order, through one partition."""
    settings = Settings()
    topo = LocalTopology(
        1,
        detectors=[DetectorSettings()],
        ttl_ms=settings.join_ttl_ms,
        rules=InputRules.from_settings(settings),
    )
    offsets = {"p": 0, "g": 0}
    records: list[InputRecord] = []
    for kind, event in scenario.events:
        key = str(event["prediction_id"]).encode()
        value = orjson.dumps(event)
        records.append(
            InputRecord(kind, _TOPICS[kind], 0, offsets[kind], key, value, event.get("timestamp"))
        )
        offsets[kind] += 1
        if len(records) == batch:
            topo.feed(records)
            records = []
    topo.feed(records)
    topo.finish()
    return topo.alerts(0, datetime.now(tz=UTC))


def _first(alerts: list[dict[str, Any]], model: str, kind: str, since_ms: int) -> int | None:
    """When the demo's summary says ``kind`` first fired on ``model``."""
    found = first_paging(alerts, model, kind, since_ms)
    return None if found is None else int(found["event_time_ms"])


def _hours_after(ms: int | None, change_ms: int) -> float | None:
    return None if ms is None else round((ms - change_ms) / HOUR_MS, 2)


def measure(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    """Rows for the quality suite, and their details."""
    scenario = demo_scenario(quick)
    alerts = run_engine(scenario)
    per_model = []
    leads: list[float] = []
    for spec in scenario.degraded:
        assert spec.change_at_ms is not None
        est = _first(alerts, spec.model_id, "estimated_degradation", spec.change_at_ms)
        label = _first(alerts, spec.model_id, "performance_degradation", spec.change_at_ms)
        entry = {
            "model": spec.model_id,
            "error": [spec.base_error, spec.degraded_error],
            "estimated_after_h": _hours_after(est, spec.change_at_ms),
            "label_based_after_h": _hours_after(label, spec.change_at_ms),
        }
        if est is not None and label is not None:
            leads.append((label - est) / HOUR_MS)
        per_model.append(entry)
    degraded = {m.model_id for m in scenario.degraded}
    false_alarms = [
        (a["model_id"], a["severity"])
        for a in alerts
        if a["kind"] == "estimated_degradation"
        and a.get("status", "firing") == "firing"
        and a["detector"] != "reconcile"
        and a["model_id"] not in degraded
    ]
    others = len(scenario.models) - len(degraded)
    text = ", ".join(
        f"{e['model']} {e['estimated_after_h']} h against {e['label_based_after_h']} h"
        for e in per_model
    )
    rows = [
        Row(
            "estimated_degradation lead over label-based: the demo's degradations",
            sum(leads) / len(leads) if leads else float("nan"),
            "h",
            baseline=f"{len(leads)}/{len(per_model)} fired before the labels; {text}",
            target="> 0 for each",
            met=len(leads) == len(per_model) and min(leads) > 0,
        ),
        Row(
            f"estimated_degradation false alarms: the demo's {others} models without a degradation",
            len(false_alarms),
            "alerts",
            baseline=f"{false_alarms}" if false_alarms else "none",
        ),
    ]
    details = {"models": len(scenario.models), "degraded": per_model, "false_alarms": false_alarms}
    return rows, details
