"""Seeded synthetic serving traffic: many models, realistic label delays, known degradations.

Used by ``watchkeeper demo``, ``watchkeeper simulate`` and the integration tests. The
scenario is a pure function of its parameters, so a test knows exactly which models
degrade, when, and how many predictions can ever be joined.

Label arrival, per prediction: ``early`` (the label is published before its prediction),
``late`` (log-normal delay, median ~2 h, tail to days), ``never``, or ``duplicate``
(late, then published again later).

Scores are calibrated: each prediction is wrong with its own probability ``w`` (uniform
on ``[0, 2 x error rate]``) and its score says so (``1 - w`` for a positive prediction,
``w`` for a negative one), so a degradation shows in the scores before any label.

Label-free scenarios, on request: ``labels_stop`` models whose labels stop at the change
while the share of positive predictions moves from 30 % to 50 %, and ``silent`` models
that stop serving at the change.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["ModelSpec", "Scenario", "build_scenario"]

HOUR_MS = 3_600_000
Kind = Literal["p", "g"]


CANARY = "2.0.0-canary"
CANARY_SHARE = 0.2
CANARY_WORSE = 0.10  # error points the canary adds
COUNTRIES = ("de", "fr", "es", "it", "nl")


@dataclass(frozen=True)
class ModelSpec:
    """One simulated model; ``change_at_ms`` is None for a stable model."""

    model_id: str
    version: str
    base_error: float
    degraded_error: float | None = None
    change_at_ms: int | None = None
    labels_stop_ms: int | None = None  # no label arrives from then on
    shifted_rate_ms: int | None = None  # the positive rate moves from 0.3 to 0.5 then
    silent_from_ms: int | None = None  # no prediction from then on
    canary_from_ms: int | None = None  # then a fifth of its predictions come from CANARY
    renamed_from_ms: int | None = None  # then its feature "amount" arrives as "amount_eur"


@dataclass
class Scenario:
    """Events in arrival order plus what a checker needs to know about them."""

    models: list[ModelSpec]
    start_ms: int
    end_ms: int
    events: list[tuple[Kind, dict[str, Any]]] = field(default_factory=list)
    predictions: int = 0
    labels: int = 0
    labelled_predictions: int = 0
    duplicate_labels: int = 0

    @property
    def degraded(self) -> list[ModelSpec]:
        return [m for m in self.models if m.change_at_ms is not None]

    @property
    def labels_stopped(self) -> list[ModelSpec]:
        return [m for m in self.models if m.labels_stop_ms is not None]

    @property
    def silenced(self) -> list[ModelSpec]:
        return [m for m in self.models if m.silent_from_ms is not None]

    @property
    def canaries(self) -> list[ModelSpec]:
        return [m for m in self.models if m.canary_from_ms is not None]

    @property
    def renamed(self) -> list[ModelSpec]:
        return [m for m in self.models if m.renamed_from_ms is not None]


DEGRADATIONS = (
    ("fraud-eu", 0.04, 0.20),
    ("churn-us", 0.08, 0.20),
    ("pricing-apac", 0.05, 0.15),
)
FAMILIES = ("fraud", "churn", "pricing", "credit", "ranking", "spam", "eta", "demand")
REGIONS = ("eu", "us", "apac", "latam")


def build_scenario(
    *,
    models: int = 24,
    predictions_per_model: int = 3000,
    degraded: int = 3,
    span_hours: float = 48.0,
    change_fraction: float = 0.5,
    start_ms: int = 1_795_000_000_000,
    seed: int = 7,
    early: float = 0.08,
    never: float = 0.12,
    duplicate: float = 0.05,
    labels_stop: int = 0,
    silent: int = 0,
    canary: int = 0,
    renamed: int = 0,
    features: bool = False,
) -> Scenario:
    """Build a deterministic scenario; ``degraded`` models change at ``change_fraction``,
    and so do the ``labels_stop``, ``silent``, ``canary`` (a new version on a fifth of the
    traffic, 10 points worse) and ``renamed`` (an upstream rename of a feature) ones, taken
    from the stable models. ``features`` adds three features to every prediction; they
    and the canary draw from a second generator, so the rest of a seed's events stay the
    same with or without them."""
    if not 0 <= degraded <= min(models, len(DEGRADATIONS)):
        raise ValueError(f"degraded must be between 0 and {min(models, len(DEGRADATIONS))}")
    changed = degraded + labels_stop + silent + canary + renamed
    if min(labels_stop, silent, canary, renamed) < 0 or changed > models:
        raise ValueError("labels_stop, silent, canary and renamed must fit among the stable")
    if renamed and not features:
        raise ValueError("a renamed feature needs features=True")
    rng = random.Random(seed)  # noqa: S311 - seeded simulation, not security
    span_ms = int(span_hours * HOUR_MS)
    change_at = start_ms + int(span_ms * change_fraction)
    specs: list[ModelSpec] = []
    for name, base, after in DEGRADATIONS[:degraded]:
        specs.append(ModelSpec(name, "2.1.0", base, after, change_at))
    names = [f"{f}-{r}" for r in REGIONS for f in FAMILIES]
    stable = [n for n in names if n not in {s.model_id for s in specs}]
    for name in stable[: models - len(specs)]:
        specs.append(ModelSpec(name, "1.0.0", round(rng.uniform(0.03, 0.10), 3)))
    if len(specs) < models:
        specs.extend(
            ModelSpec(f"model-{i:05d}", "1.0.0", round(rng.uniform(0.03, 0.10), 3))
            for i in range(models - len(specs))
        )
    first = len(DEGRADATIONS[:degraded])
    for k in range(labels_stop):
        at = first + k
        specs[at] = replace(specs[at], labels_stop_ms=change_at, shifted_rate_ms=change_at)
    for k in range(silent):
        at = first + labels_stop + k
        specs[at] = replace(specs[at], silent_from_ms=change_at)
    for k in range(canary):
        at = first + labels_stop + silent + k
        specs[at] = replace(specs[at], canary_from_ms=change_at)
    for k in range(renamed):
        at = first + labels_stop + silent + canary + k
        specs[at] = replace(specs[at], renamed_from_ms=change_at)
    side = random.Random(seed * 7919 + 1)  # noqa: S311 - features and canary draws

    timed: list[tuple[int, int, Kind, dict[str, Any]]] = []
    sc = Scenario(specs, start_ms, start_ms + span_ms)
    seq = 0
    for spec in specs:
        for i in range(predictions_per_model):
            ts = start_ms + int(rng.random() * span_ms)
            pid = f"{spec.model_id}-{i:07d}"
            shifted = spec.shifted_rate_ms is not None and ts >= spec.shifted_rate_ms
            prediction = rng.random() < (0.5 if shifted else 0.3)
            degraded_now = spec.change_at_ms is not None and ts >= spec.change_at_ms
            rate = spec.degraded_error if degraded_now and spec.degraded_error else spec.base_error
            version = spec.version
            if spec.canary_from_ms is not None and ts >= spec.canary_from_ms:
                if side.random() < CANARY_SHARE:
                    version, rate = CANARY, min(rate + CANARY_WORSE, 1.0)
            draw, w = rng.random(), min(2 * rate * rng.random(), 1.0)
            wrong = draw < w  # calibrated: wrong with probability w, which the score shows
            label = (not prediction) if wrong else prediction
            event = {
                "prediction_id": pid,
                "model_id": spec.model_id,
                "model_version": version,
                "timestamp": ts,
                "prediction": int(prediction),
                "score": round(1.0 - w if prediction else w, 4),
                "segment": spec.model_id.rsplit("-", 1)[-1],
            }
            if features:
                renamed_now = spec.renamed_from_ms is not None and ts >= spec.renamed_from_ms
                event["features"] = {
                    "amount_eur" if renamed_now else "amount": round(
                        math.exp(side.gauss(3.5, 0.8)), 2
                    ),
                    "country": side.choice(COUNTRIES),
                    "channel": side.choice(("web", "app", "store")),
                }
            fate = rng.random()
            if spec.silent_from_ms is not None and ts >= spec.silent_from_ms:
                continue
            timed.append((ts, seq, "p", event))
            seq += 1
            sc.predictions += 1
            if fate < never:
                continue
            sc.labelled_predictions += 1
            if fate < never + early:
                arrival = ts - int(rng.uniform(1_000, 600_000))
            else:
                arrival = ts + int(math.exp(rng.gauss(math.log(2 * HOUR_MS), 1.0)))
            arrivals = [arrival]
            if fate > 1 - duplicate:
                arrivals.append(arrival + int(rng.uniform(60_000, 6 * HOUR_MS)))
                sc.duplicate_labels += 1
            if spec.labels_stop_ms is not None:
                arrivals = [at for at in arrivals if at < spec.labels_stop_ms]
                if not arrivals:
                    sc.labelled_predictions -= 1
                    continue
                sc.duplicate_labels -= len(arrivals) == 1 and fate > 1 - duplicate
            for at in arrivals:
                timed.append(
                    (at, seq, "g", {"prediction_id": pid, "label": int(label), "timestamp": at})
                )
                seq += 1
                sc.labels += 1
    timed.sort(key=lambda item: (item[0], item[1]))
    sc.events = [(kind, event) for _, _, kind, event in timed]
    return sc
