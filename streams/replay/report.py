"""What ``watchkeeper replay`` shows and writes: tables, scores against known changes, files.

Everything here reads a finished :class:`~streams.backtest.BacktestResult`; nothing
replays or talks to Kafka, so the report is a pure function of the result (plus the
expected change points), testable without a broker. Change points are judged on event
time, the clock the detectors run on, not on when the replay happened to run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from streams.contract.alerts import LABEL_FREE_KINDS, LIFECYCLE_KINDS, rfc3339_ms
from streams.errors import ConfigError
from streams.replay.backtest import HOUR_MS, BacktestResult, ModelSummary
from streams.replay.times import parse_time

__all__ = [
    "ChangeMatch",
    "ComboScore",
    "ExpectedChange",
    "evaluate",
    "load_expected",
    "model_table",
    "plot_name",
    "sweep_table",
    "write_outputs",
]

DEGRADATION = "performance_degradation"
IMPROVEMENT = "performance_improvement"
CHANGE_KINDS = (DEGRADATION, IMPROVEMENT)
SIGNAL_KINDS = (*LABEL_FREE_KINDS, *LIFECYCLE_KINDS)
SCORED_KINDS = (DEGRADATION, *SIGNAL_KINDS)
EXPECTED_COLUMNS = ("model_id", "change_at")
ALERT_COLUMNS = (
    "combination",
    "model_id",
    "alert_id",
    "kind",
    "detector",
    "severity",
    "event_time",
    "outcome_index",
    "error_before",
    "error_after",
    "n_before",
    "n_after",
    "signal",
    "status",
)
MODEL_COLUMNS = (
    "model_id",
    "predictions",
    "joined",
    "label_coverage",
    "expired_predictions",
    "unscorable",
    "first_event_ms",
    "last_event_ms",
)


# --- expected change points -------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedChange:
    """A change an analyst knows happened: model ``model_id`` changed at event time
    ``at_ms``, which alerts of ``kind`` should catch."""

    model_id: str
    at_ms: int
    kind: str = DEGRADATION


def load_expected(path: Path) -> list[ExpectedChange]:
    """Read ``model_id,change_at[,kind]`` rows (RFC 3339 or epoch ms) from a CSV file;
    ``kind`` defaults to performance_degradation and may be any label-free, input or
    lifecycle kind.

    Errors name the file, line and column, so a typo in a long file is found at once
    instead of silently scoring against a wrong change point."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"expected change points file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read expected change points: {exc}") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    columns = tuple(h.strip() for h in header) if header else ()
    if columns not in (EXPECTED_COLUMNS, (*EXPECTED_COLUMNS, "kind")):
        got = ",".join(header) if header else "an empty file"
        raise ValueError(
            f"{path}: line 1: expected header 'model_id,change_at' or "
            f"'model_id,change_at,kind', got {got!r}"
        )
    changes: list[ExpectedChange] = []
    seen: dict[ExpectedChange, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            raise ValueError(
                f"{path}: line {line}: expected {len(columns)} columns, got {len(row)}"
            )
        model_id, raw, *rest = (cell.strip() for cell in row)
        kind = rest[0] if rest and rest[0] else DEGRADATION
        if not model_id:
            raise ValueError(f"{path}: line {line}: column model_id: empty")
        if kind not in SCORED_KINDS:
            raise ValueError(
                f"{path}: line {line}: column kind: {kind!r} is not one of "
                f"{', '.join(SCORED_KINDS)}"
            )
        try:
            at_ms = parse_time(raw)  # as --from and --to read their times
        except (ValueError, ConfigError) as exc:
            raise ValueError(f"{path}: line {line}: column change_at: {exc}") from None
        change = ExpectedChange(model_id, at_ms, kind)
        if change in seen:
            raise ValueError(f"{path}: line {line}: duplicate of line {seen[change]}")
        seen[change] = line
        changes.append(change)
    return changes


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeMatch:
    """One expected change and the first alert of its kind at or after it (None: missed)."""

    model_id: str
    at_ms: int
    alert_id: str | None = None
    detector: str | None = None
    alert_ms: int | None = None
    kind: str = DEGRADATION

    @property
    def delay_ms(self) -> int | None:
        return None if self.alert_ms is None else self.alert_ms - self.at_ms

    @property
    def delay_h(self) -> float | None:
        delay = self.delay_ms
        return None if delay is None else delay / HOUR_MS

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "kind": self.kind,
            "change_at": rfc3339_ms(self.at_ms),
            "change_at_ms": self.at_ms,
            "detected": self.alert_id is not None,
            "alert_id": self.alert_id,
            "detector": self.detector,
            "alert_event_time_ms": self.alert_ms,
            "delay_ms": self.delay_ms,
            "delay_h": None if self.delay_h is None else round(self.delay_h, 6),
        }


@dataclass
class ComboScore:
    """How one detector configuration did; without expectations only ``detections`` counts."""

    name: str
    overrides: dict[str, str]
    detections: int
    matches: list[ChangeMatch] = field(default_factory=list)
    false_alarms: int = 0

    @property
    def expected(self) -> int:
        return len(self.matches)

    @property
    def detected(self) -> int:
        return sum(m.alert_id is not None for m in self.matches)

    @property
    def missed(self) -> int:
        return self.expected - self.detected

    @property
    def mean_delay_h(self) -> float | None:
        delays = [m.delay_h for m in self.matches if m.delay_h is not None]
        return sum(delays) / len(delays) if delays else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "detections": self.detections}
        if self.matches:
            mean = self.mean_delay_h
            out |= {
                "expected": self.expected,
                "detected": self.detected,
                "missed": self.missed,
                "false_alarms": self.false_alarms,
                "mean_delay_h": None if mean is None else round(mean, 6),
                "changes": [m.to_dict() for m in self.matches],
            }
        return out


def _firing(alerts: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The alerts of ``kind`` that report a change (not resolves, not reconciliations)."""
    return sorted(
        (
            a
            for a in alerts
            if a["kind"] == kind
            and a.get("status", "firing") == "firing"
            and a.get("detector") != "reconcile"
        ),
        key=lambda a: (a["event_time_ms"], a.get("outcome_index") or 0),
    )


def evaluate(result: BacktestResult, expected: list[ExpectedChange]) -> list[ComboScore]:
    """Score every combination of the sweep against the known change points.

    Each kind is scored on its own: a change is detected by the model's first alert of
    the change's kind at or after it (and before the model's next expected change of that
    kind, if several are given); alerts of a kind on models not expected to change in that
    way, or before their first expected change of it, are false alarms. Later alerts on an
    already detected change are neither: both detectors confirming one change is not a
    false alarm. Without expectations, degradations are counted."""
    kinds = sorted({c.kind for c in expected}, key=SCORED_KINDS.index) or [DEGRADATION]
    scores = []
    for combo in result.combinations:
        alerts = result.alerts.get(combo.name, [])
        firing = {kind: _firing(alerts, kind) for kind in kinds}
        score = ComboScore(combo.name, dict(combo.overrides), sum(map(len, firing.values())))
        for kind in kinds if expected else []:
            changes: dict[str, list[int]] = defaultdict(list)
            for change in expected:
                if change.kind == kind:
                    changes[change.model_id].append(change.at_ms)
            for times in changes.values():
                times.sort()
            grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for a in firing[kind]:
                grouped[a["model_id"]].append(a)
            for model_id, mine in grouped.items():
                starts = changes.get(model_id)
                if starts is None:
                    score.false_alarms += len(mine)
                else:
                    score.false_alarms += sum(a["event_time_ms"] < starts[0] for a in mine)
            for model_id, times in sorted(changes.items()):
                bounds = [*times[1:], math.inf]
                for at_ms, until in zip(times, bounds, strict=True):
                    hit = next(
                        (
                            a
                            for a in grouped.get(model_id, [])
                            if at_ms <= a["event_time_ms"] < until
                        ),
                        None,
                    )
                    if hit is None:
                        score.matches.append(ChangeMatch(model_id, at_ms, kind=kind))
                    else:
                        score.matches.append(
                            ChangeMatch(
                                model_id,
                                at_ms,
                                hit["alert_id"],
                                hit["detector"],
                                hit["event_time_ms"],
                                kind,
                            )
                        )
        scores.append(score)
    return scores


# --- tables ----------------------------------------------------------------------------------


def _range(result: BacktestResult) -> str:
    if result.start_ms is None and result.end_ms is None:
        return "all events"
    start = "beginning" if result.start_ms is None else rfc3339_ms(result.start_ms)
    end = "end" if result.end_ms is None else rfc3339_ms(result.end_ms)
    return f"{start} .. {end}"


def _rate(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "?"


def _change_line(alert: dict[str, Any]) -> str:
    stamp = datetime.fromtimestamp(alert["event_time_ms"] / 1000, tz=UTC)
    if alert["kind"] not in CHANGE_KINDS:
        status = " resolved" if alert.get("status") == "resolved" else ""
        return f"{stamp:%Y-%m-%d %H:%M}Z {alert['kind']} ({alert.get('signal')}){status}"
    before = (alert.get("before") or {}).get("error_rate")
    after = (alert.get("after") or {}).get("error_rate")
    return (
        f"{stamp:%Y-%m-%d %H:%M}Z {alert['detector']} {_rate(before)} \N{RIGHTWARDS ARROW} "
        f"{_rate(after)}"
    )


def _alerts_of(result: BacktestResult, combination_name: str) -> list[dict[str, Any]]:
    if combination_name not in result.alerts:
        known = ", ".join(repr(c.name) for c in result.combinations) or "none"
        raise ValueError(f"no combination named {combination_name!r}; known: {known}")
    return result.alerts[combination_name]


def _change_points(alerts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in alerts:
        if a.get("kind") in CHANGE_KINDS or a.get("kind") in SIGNAL_KINDS:
            grouped[a["model_id"]].append(a)
    for found in grouped.values():
        found.sort(key=lambda a: (a["event_time_ms"], a["outcome_index"] or 0))
    return grouped


def model_table(result: BacktestResult, combination_name: str) -> Table:
    """One row per model with the change points one combination found, for the terminal."""
    found = _change_points(_alerts_of(result, combination_name))
    table = Table(
        title=f"{combination_name}: {_range(result)}",
        title_justify="left",
    )
    table.add_column("model")
    table.add_column("predictions", justify="right")
    table.add_column("joined", justify="right")
    table.add_column("label coverage", justify="right")
    table.add_column("changes and signals", justify="right")
    table.add_column("event time, detector, error rate before \N{RIGHTWARDS ARROW} after; signals")
    for model_id in sorted(set(result.models) | set(found)):
        summary = result.models.get(model_id) or ModelSummary(model_id)
        changes = found.get(model_id, [])
        table.add_row(
            model_id,
            str(summary.predictions),
            str(summary.joined),
            f"{summary.label_coverage:.1%}",
            str(len(changes)),
            "\n".join(_change_line(a) for a in changes) or "-",
        )
    return table


def sweep_table(result: BacktestResult, scores: list[ComboScore]) -> Table:
    """One row per combination, so settings can be compared side by side."""
    scored = any(s.expected for s in scores)
    table = Table(
        title=f"{len(scores)} detector configuration(s), {_range(result)}", title_justify="left"
    )
    table.add_column("combination")
    table.add_column("detections", justify="right")
    if scored:
        for header in ("detected", "missed", "false alarms", "mean delay (h)"):
            table.add_column(header, justify="right")
    for s in scores:
        row = [s.name, str(s.detections)]
        if scored:
            mean = s.mean_delay_h
            row += [
                f"{s.detected}/{s.expected}",
                str(s.missed),
                str(s.false_alarms),
                "-" if mean is None else f"{mean:.2f}",
            ]
        table.add_row(*row)
    return table


# --- files -----------------------------------------------------------------------------------


def plot_name(model_id: str) -> str:
    """A file name for ``model_id``'s plot; ids that needed changing get a hash suffix,
    so two ids that sanitize alike still get distinct files."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_id)[:100]
    if safe != model_id or safe.startswith("."):
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
        safe = f"{safe.lstrip('.')}-{digest}"
    return f"{safe}.png"


def write_outputs(result: BacktestResult, scores: list[ComboScore], out_dir: Path) -> list[Path]:
    """Write results.json, alerts.csv, models.csv and plots/<model>.png under ``out_dir``.

    The JSON holds everything (for notebooks and diffs between runs); the CSVs are the
    same rows flattened for spreadsheets. Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in scores}
    models = [result.models[m] for m in sorted(result.models)]
    rate = result.events / result.elapsed_s if result.elapsed_s > 0 else None
    document = {
        "range": {
            "start_ms": result.start_ms,
            "end_ms": result.end_ms,
            "start": None if result.start_ms is None else rfc3339_ms(result.start_ms),
            "end": None if result.end_ms is None else rfc3339_ms(result.end_ms),
        },
        "events": result.events,
        "late_outcomes": result.late_outcomes,
        "dead_letters": result.dead_letters,
        "elapsed_s": round(result.elapsed_s, 6),
        "events_per_s": None if rate is None else round(rate, 3),
        "models": [m.to_dict() for m in models],
        "combinations": [
            {
                "name": c.name,
                "overrides": dict(c.overrides),
                "alerts": result.alerts.get(c.name, []),
                "score": by_name[c.name].to_dict() if c.name in by_name else None,
            }
            for c in result.combinations
        ],
    }
    written = [out_dir / "results.json", out_dir / "alerts.csv", out_dir / "models.csv"]
    written[0].write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    with written[1].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ALERT_COLUMNS)
        for c in result.combinations:
            for a in result.alerts.get(c.name, []):
                before, after = a.get("before") or {}, a.get("after") or {}
                writer.writerow(
                    [
                        c.name,
                        a["model_id"],
                        a["alert_id"],
                        a["kind"],
                        a["detector"],
                        a["severity"],
                        a["event_time"],
                        a.get("outcome_index"),
                        before.get("error_rate"),
                        after.get("error_rate"),
                        before.get("count"),
                        after.get("count"),
                        a.get("signal"),
                        a.get("status", "firing"),
                    ]
                )
    with written[2].open("w", newline="", encoding="utf-8") as f:
        dict_writer = csv.DictWriter(f, fieldnames=MODEL_COLUMNS, extrasaction="ignore")
        dict_writer.writeheader()
        for m in models:
            dict_writer.writerow(m.to_dict())

    from streams.replay.plots import write_plot  # matplotlib only when files are written

    first = result.combinations[0].name if result.combinations else None
    mine: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in result.alerts.get(first, []) if first is not None else []:
        mine[a["model_id"]].append(a)
    expected: dict[str, list[int]] = defaultdict(list)
    if scores:
        for match in scores[0].matches:
            expected[match.model_id].append(match.at_ms)
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    for m in models:
        path = plots / plot_name(m.model_id)
        write_plot(m, mine.get(m.model_id, []), expected.get(m.model_id, []), first, path)
        written.append(path)
    return written
