"""The replay report: expected change points, scoring, tables and the files it writes."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from detectors.base import Change
from detectors.config import DetectorSettings
from detectors.signal import Signal
from streams.contract.alerts import build_alert, build_signal_alert
from streams.dev.simulate import build_scenario
from streams.engine.join_step import InputRecord
from streams.engine.rules import InputRules
from streams.replay.backtest import (
    HOUR_MS,
    Backtest,
    BacktestResult,
    Combination,
    ModelSummary,
    expand_sweeps,
)
from streams.replay.report import (
    ExpectedChange,
    evaluate,
    load_expected,
    model_table,
    plot_name,
    sweep_table,
    write_outputs,
)

T = int(datetime(2026, 11, 19, 12, tzinfo=UTC).timestamp() * 1000)
MIN_MS = 60_000
DETECTED_AT = datetime(2026, 12, 1, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"


def alert(
    model_id: str,
    at_ms: int,
    *,
    detector: str = "adwin",
    up: bool = True,
    index: int = 100,
    before: float = 0.04,
    after: float = 0.2,
) -> dict[str, Any]:
    change = Change(
        detector, "increase" if up else "decrease", index, at_ms, before, 400, after, 60
    )
    return build_alert(
        change,
        model_id=model_id,
        model_version="1",
        detected_at=DETECTED_AT,
        config_fingerprint="f",
    )


def summary(model_id: str, predictions: int, joined: int) -> ModelSummary:
    s = ModelSummary(model_id, predictions=predictions, joined=joined)
    s.first_ms, s.last_ms = T - 3 * HOUR_MS, T + 2 * HOUR_MS
    # hour offset -> predictions, of which joined, errors among them (by prediction time)
    hours = {-3: (12, 10, 1), -2: (25, 20, 1), -1: (10, 10, 3), 0: (4, 0, 0), 1: (5, 5, 1)}
    for offset, (made, labelled, wrong) in hours.items():
        counters = s.series.slot(T + offset * HOUR_MS)
        counters[:] = [made, labelled, float(wrong), float(wrong)]
    return s


def combo(name: str) -> Combination:
    return Combination(name, {"adwin.delta": name}, DetectorSettings())


def hand_made(alerts_a: list[dict[str, Any]], alerts_b: list[dict[str, Any]]) -> BacktestResult:
    models = {
        "m1": summary("m1", 1000, 800),
        "m2": summary("m2", 500, 250),
        "m3": summary("m3", 40, 0),
        "m4": summary("m4", 7, 7),
    }
    return BacktestResult(
        T - 6 * HOUR_MS,
        T + 6 * HOUR_MS,
        [combo("a"), combo("b")],
        models,
        {"a": alerts_a, "b": alerts_b},
        events=3094,
        late_outcomes=3,
        dead_letters=2,
        elapsed_s=2.0,
    )


EXPECTED = [ExpectedChange("m1", T), ExpectedChange("m3", T), ExpectedChange("m4", T)]


@pytest.fixture
def result() -> BacktestResult:
    alerts_a = [
        alert("m1", T - HOUR_MS, index=10),  # before m1's change: false alarm
        alert("m1", T + 3 * HOUR_MS, index=40),  # a later confirmation: neither
        alert("m1", T + 90 * MIN_MS, detector="page_hinkley", index=30),  # detects, 1.5 h
        alert("m1", T + 2 * HOUR_MS, up=False, index=35),  # improvement: not a detection
        alert("m2", T - 5 * HOUR_MS, index=5),  # m2 is stable: false alarm
        alert("m2", T + 5 * HOUR_MS, detector="page_hinkley", index=6),  # false alarm
        alert("m2", T + HOUR_MS, up=False, index=7),  # improvements never count
        alert("m3", T + HOUR_MS, up=False, index=8),  # m3 improved only: missed
        alert("m4", T + 30 * MIN_MS, index=9),  # detects, 0.5 h
    ]
    alerts_b = [alert("m2", T, index=11)]
    return hand_made(alerts_a, alerts_b)


# --- load_expected ---------------------------------------------------------------------------


def test_load_expected_reads_both_time_formats(tmp_path: Path):
    path = tmp_path / "changes.csv"
    path.write_text(
        "model_id,change_at\n"
        "fraud-eu,2026-11-19T12:00:00Z\n"
        "\n"
        f" churn-us , {T + 1234} \n"
        "pricing,2026-11-19T13:30:00.250+01:00\n"
    )
    assert load_expected(path) == [
        ExpectedChange("fraud-eu", T),
        ExpectedChange("churn-us", T + 1234),
        ExpectedChange("pricing", T + 30 * MIN_MS + 250),
    ]


def test_load_expected_header_only_is_empty(tmp_path: Path):
    path = tmp_path / "changes.csv"
    path.write_text("model_id,change_at\n")
    assert load_expected(path) == []


@pytest.mark.parametrize(
    ("body", "where", "detail"),
    [
        ("m,2026-11-19T12:00:00Z\nm,yesterday\n", "line 3: column change_at", "yesterday"),
        ("m,2026-11-19T12:00:00\n", "line 2: column change_at", "has no timezone"),
        ("m,2026-11-19T12:00:00Z\n,2026-11-19T12:00:00Z\n", "line 3: column model_id", "empty"),
        ("m,1,extra\n", "line 2", "expected 2 columns, got 3"),
        ("m\n", "line 2", "expected 2 columns, got 1"),
        ("m,-5\n", "line 2: column change_at", "-5"),
        ("m,12.5\n", "line 2: column change_at", "12.5"),
        (f"m,{T}\nm,2026-11-19T12:00:00Z\n", "line 3", "duplicate of line 2"),
    ],
)
def test_load_expected_names_line_and_column(tmp_path: Path, body: str, where: str, detail: str):
    path = tmp_path / "changes.csv"
    path.write_text("model_id,change_at\n" + body)
    with pytest.raises(ValueError, match="line") as info:
        load_expected(path)
    message = str(info.value)
    assert str(path) in message and where in message and detail in message


def test_load_expected_rejects_a_wrong_header(tmp_path: Path):
    path = tmp_path / "changes.csv"
    path.write_text("model,when\nm,2026-11-19T12:00:00Z\n")
    with pytest.raises(ValueError, match="line 1: expected header 'model_id,change_at'"):
        load_expected(path)


def test_load_expected_missing_file_names_it(tmp_path: Path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_expected(missing)


# --- evaluate --------------------------------------------------------------------------------


def test_evaluate_delays_misses_and_false_alarms(result: BacktestResult):
    a, b = evaluate(result, EXPECTED)

    assert (a.name, a.overrides) == ("a", {"adwin.delta": "a"})
    assert a.detections == 6  # degradations only
    by_model = {m.model_id: m for m in a.matches}
    assert by_model["m1"].detector == "page_hinkley"
    assert by_model["m1"].delay_ms == 90 * MIN_MS
    assert by_model["m1"].delay_h == 1.5
    assert by_model["m1"].alert_id == result.alerts["a"][2]["alert_id"]
    assert by_model["m4"].delay_ms == 30 * MIN_MS
    assert by_model["m3"].alert_id is None and by_model["m3"].delay_ms is None
    assert (a.expected, a.detected, a.missed) == (3, 2, 1)
    assert a.false_alarms == 3  # one before m1's change, two on the stable m2
    assert a.mean_delay_h == pytest.approx(1.0)

    assert b.detections == 1
    assert (b.detected, b.missed, b.false_alarms, b.mean_delay_h) == (0, 3, 1, None)


def test_evaluate_several_changes_of_one_model_each_get_their_own_alert():
    alerts = [
        alert("m1", T + 10 * MIN_MS, index=1),
        alert("m1", T + 2 * HOUR_MS, index=2),  # after the second change
    ]
    result = hand_made(alerts, [alert("m1", T + 20 * HOUR_MS, index=3)])
    expected = [ExpectedChange("m1", T + HOUR_MS), ExpectedChange("m1", T)]
    a, b = evaluate(result, expected)
    assert [(m.at_ms, m.delay_ms) for m in a.matches] == [
        (T, 10 * MIN_MS),
        (T + HOUR_MS, HOUR_MS),
    ]
    assert a.false_alarms == 0
    # an alert after both changes answers only the latest one
    assert [m.delay_ms for m in b.matches] == [None, 19 * HOUR_MS]


def test_evaluate_alert_at_the_change_itself_detects_it_with_zero_delay():
    result = hand_made([alert("m1", T - 1, index=1), alert("m1", T, index=2)], [])
    (a, _) = evaluate(result, [ExpectedChange("m1", T)])
    assert [m.delay_ms for m in a.matches] == [0]
    assert a.false_alarms == 1  # only the one a millisecond early


def test_evaluate_without_expectations_counts_detections_only(result: BacktestResult):
    scores = evaluate(result, [])
    assert [(s.name, s.detections) for s in scores] == [("a", 6), ("b", 1)]
    assert all(s.matches == [] and s.false_alarms == 0 for s in scores)
    assert scores[0].to_dict() == {"name": "a", "detections": 6}


# --- tables ----------------------------------------------------------------------------------


def render(table: Any) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_model_table_lists_each_model_with_its_change_points(result: BacktestResult):
    text = render(model_table(result, "a"))
    lines = text.splitlines()
    rows = {m: next(i for i, line in enumerate(lines) if f" {m} " in line) for m in result.models}
    assert rows["m1"] < rows["m2"] < rows["m3"] < rows["m4"]  # sorted by model id
    m1 = lines[rows["m1"]]
    assert "1000" in m1 and "800" in m1 and "80.0%" in m1 and " 4 " in m1
    assert "50.0%" in lines[rows["m2"]] and "0.0%" in lines[rows["m3"]]
    # m1's four change points, in event time order, one per line of the cell
    assert "2026-11-19 11:00Z adwin 4.0% → 20.0%" in m1
    following = "\n".join(lines[rows["m1"] : rows["m2"]])
    for stamp in ("13:30Z page_hinkley", "14:00Z adwin 4.0% → 20.0%", "15:00Z adwin"):
        assert f"2026-11-19 {stamp}" in following
    assert following.index("13:30Z") < following.index("14:00Z") < following.index("15:00Z")


def test_model_table_of_an_unknown_combination_names_the_known_ones(result: BacktestResult):
    with pytest.raises(ValueError, match="'c'.*'a', 'b'"):
        model_table(result, "c")


def test_sweep_table_with_and_without_expectations(result: BacktestResult):
    text = render(sweep_table(result, evaluate(result, EXPECTED)))
    assert "false alarms" in text and "mean delay (h)" in text
    row_a = next(line for line in text.splitlines() if line.startswith("│ a "))
    assert [cell.strip() for cell in row_a.strip("│").split("│")] == [
        "a",
        "6",
        "2/3",
        "1",
        "3",
        "1.00",
    ]
    row_b = next(line for line in text.splitlines() if line.startswith("│ b "))
    assert [cell.strip() for cell in row_b.strip("│").split("│")] == [
        "b",
        "1",
        "0/3",
        "3",
        "1",
        "-",
    ]

    bare = render(sweep_table(result, evaluate(result, [])))
    assert "false alarms" not in bare and "missed" not in bare
    assert "detections" in bare


# --- files -----------------------------------------------------------------------------------


def test_write_outputs_writes_json_csvs_and_plots(result: BacktestResult, tmp_path: Path):
    scores = evaluate(result, EXPECTED)
    out = tmp_path / "out" / "run"
    written = write_outputs(result, scores, out)

    plots = [out / "plots" / f"{m}.png" for m in ("m1", "m2", "m3", "m4")]
    assert written == [out / "results.json", out / "alerts.csv", out / "models.csv", *plots]
    for png in plots:
        assert png.read_bytes().startswith(PNG)

    doc = json.loads((out / "results.json").read_text())
    assert doc["range"] == {
        "start_ms": T - 6 * HOUR_MS,
        "end_ms": T + 6 * HOUR_MS,
        "start": "2026-11-19T06:00:00.000Z",
        "end": "2026-11-19T18:00:00.000Z",
    }
    assert (doc["events"], doc["late_outcomes"], doc["dead_letters"]) == (3094, 3, 2)
    assert doc["elapsed_s"] == 2.0 and doc["events_per_s"] == 1547.0
    assert [m["model_id"] for m in doc["models"]] == ["m1", "m2", "m3", "m4"]
    assert doc["models"][0]["label_coverage"] == 0.8
    first, second = doc["combinations"]
    assert first["name"] == "a" and first["overrides"] == {"adwin.delta": "a"}
    assert first["alerts"] == result.alerts["a"]
    assert first["score"]["false_alarms"] == 3 and first["score"]["missed"] == 1
    assert first["score"]["mean_delay_h"] == 1.0
    m1 = next(c for c in first["score"]["changes"] if c["model_id"] == "m1")
    assert m1["delay_ms"] == 90 * MIN_MS and m1["change_at"] == "2026-11-19T12:00:00.000Z"
    assert len(second["alerts"]) == 1 and second["score"]["detected"] == 0

    with (out / "alerts.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.alerts["a"]) + len(result.alerts["b"]) == 10
    assert [r["combination"] for r in rows].count("b") == 1
    ph = next(r for r in rows if r["detector"] == "page_hinkley" and r["model_id"] == "m1")
    assert (ph["outcome_index"], ph["error_before"], ph["error_after"]) == ("30", "0.04", "0.2")
    assert (ph["n_before"], ph["n_after"], ph["kind"]) == ("400", "60", "performance_degradation")
    assert ph["event_time"] == "2026-11-19T13:30:00.000Z"

    with (out / "models.csv").open(newline="") as f:
        models = list(csv.DictReader(f))
    assert [(m["model_id"], m["predictions"], m["joined"]) for m in models] == [
        ("m1", "1000", "800"),
        ("m2", "500", "250"),
        ("m3", "40", "0"),
        ("m4", "7", "7"),
    ]


def test_write_outputs_keeps_plot_files_inside_the_plot_directory(tmp_path: Path):
    odd = ["../etc/passwd", "team/fraud eu", "team_fraud_eu", ".hidden"]
    result = BacktestResult(
        None,
        None,
        [combo("a")],
        {m: ModelSummary(m) for m in odd},  # no outcomes at all still plots
        {"a": []},
    )
    written = write_outputs(result, evaluate(result, []), tmp_path)
    pngs = written[3:]
    assert len(pngs) == len(set(pngs)) == 4
    for png in pngs:
        assert png.parent == tmp_path / "plots" and not png.name.startswith(".")
        assert png.read_bytes().startswith(PNG)
    assert plot_name("fraud-eu.v2") == "fraud-eu.v2.png"
    assert plot_name("team/fraud eu") != plot_name("team_fraud_eu")


# --- a real replay -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replayed() -> tuple[BacktestResult, list[ExpectedChange]]:
    scenario = build_scenario(models=3, predictions_per_model=3000, degraded=1, seed=3)
    combos = expand_sweeps(DetectorSettings(), ["adwin.delta=0.002,0.0005"])
    backtest = Backtest(
        combos,
        partitions=4,
        ttl_ms=7 * 86_400_000,
        rules=InputRules(lag_ms=300_000),
        detected_at=DETECTED_AT,
    )
    # all on partition 0 of each topic, as one unkeyed producer might send them: the
    # engine routes each to its home partition
    topics = {"p": "predictions", "g": "ground-truth"}
    backtest.feed(
        [
            InputRecord(kind, topics[kind], 0, offset, None, orjson.dumps(event), 0)
            for offset, (kind, event) in enumerate(scenario.events)
        ]
    )
    expected = [ExpectedChange(m.model_id, m.change_at_ms or 0) for m in scenario.degraded]
    return backtest.finish(), expected


def test_a_replayed_degradation_is_scored_and_reported(
    replayed: tuple[BacktestResult, list[ExpectedChange]], tmp_path: Path
):
    result, expected = replayed
    assert [e.model_id for e in expected] == ["fraud-eu"]
    scores = evaluate(result, expected)
    assert [s.name for s in scores] == ["adwin.delta=0.002", "adwin.delta=0.0005"]
    for score in scores:
        alerts = result.alerts[score.name]
        assert score.detections == sum(a["kind"] == "performance_degradation" for a in alerts)
        assert (score.detected, score.missed) == (1, 0)
        (match,) = score.matches
        first_after = min(
            a["event_time_ms"]
            for a in alerts
            if a["model_id"] == "fraud-eu"
            and a["kind"] == "performance_degradation"
            and a["event_time_ms"] >= match.at_ms
        )
        assert match.delay_ms == first_after - match.at_ms > 0

    written = write_outputs(result, scores, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["events"] == result.events
    assert sum(m["predictions"] for m in doc["models"]) == 9000
    with (tmp_path / "alerts.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == sum(len(a) for a in result.alerts.values())
    assert sorted(p.name for p in written[3:]) == ["churn-eu.png", "fraud-eu.png", "pricing-eu.png"]
    assert all(p.read_bytes().startswith(PNG) for p in written[3:])

    text = render(model_table(result, scores[0].name))
    for model_id, s in result.models.items():
        assert model_id in text and str(s.predictions) in text and str(s.joined) in text


# --- label-free kinds in --expect ----------------------------------------------------------------


def signal_alert(model_id: str, at_ms: int, kind: str, *, status: str = "firing") -> dict[str, Any]:
    signal = Signal(
        kind,
        "window",
        "label_coverage",
        status,
        None,
        at_ms,
        at_ms,
        "warning",
        {},
        {},
        "x",  # type: ignore[arg-type]
    )
    return build_signal_alert(
        signal,
        model_id=model_id,
        model_version="1",
        detected_at=DETECTED_AT,
        config_fingerprint="f",
    )


def test_load_expected_reads_an_optional_kind_column(tmp_path: Path) -> None:
    path = tmp_path / "changes.csv"
    path.write_text(
        "model_id,change_at,kind\nm1,2026-11-19T12:00:00Z,labels_missing\nm2,2026-11-19T12:00:00Z,\n"
    )
    assert load_expected(path) == [
        ExpectedChange("m1", T, "labels_missing"),
        ExpectedChange("m2", T, "performance_degradation"),
    ]
    path.write_text("model_id,change_at,kind\nm1,2026-11-19T12:00:00Z,labels_gone\n")
    with pytest.raises(ValueError, match="line 2: column kind: 'labels_gone' is not one of"):
        load_expected(path)


def test_each_kind_is_scored_against_its_own_expected_changes() -> None:
    """A labels_missing alert detects an expected labels_missing change, not a degradation;
    resolves never count; the same kind on a model expected to change otherwise is a false
    alarm."""
    alerts = [
        signal_alert("m1", T + HOUR_MS, "labels_missing"),  # detects m1's change, 1 h
        signal_alert("m1", T + 2 * HOUR_MS, "labels_missing", status="resolved"),  # neither
        signal_alert("m2", T + HOUR_MS, "labels_missing"),  # m2 expects silence: false alarm
        signal_alert("m2", T + 30 * MIN_MS, "model_silent"),  # detects m2's, 0.5 h
        alert("m1", T + HOUR_MS, index=3),  # degradation: m1 expects none of it: false alarm
    ]
    expected = [
        ExpectedChange("m1", T, "labels_missing"),
        ExpectedChange("m2", T, "model_silent"),
        ExpectedChange("m3", T, "model_silent"),  # nothing fires: missed
    ]
    (score, _) = evaluate(hand_made(alerts, []), expected)
    assert (score.detected, score.missed) == (2, 1)
    assert score.false_alarms == 1  # the labels_missing of m2; degradations are not scored
    by_model = {(m.model_id, m.kind): m.delay_ms for m in score.matches}
    assert by_model == {
        ("m1", "labels_missing"): HOUR_MS,
        ("m2", "model_silent"): 30 * MIN_MS,
        ("m3", "model_silent"): None,
    }
    (score, _) = evaluate(hand_made(alerts, []), [*expected, ExpectedChange("m4", T)])
    assert score.false_alarms == 2  # degradations are scored now: m1's is a false alarm


def test_expect_reads_times_as_from_and_to_do(tmp_path: Path) -> None:
    """``2026-11-19T12:00Z`` (no seconds) works in --from, so it works in --expect."""
    from streams.replay.times import parse_time

    path = tmp_path / "changes.csv"
    path.write_text("model_id,change_at\nm,2026-11-19T12:00Z\n")
    assert load_expected(path) == [ExpectedChange("m", T)] and parse_time("2026-11-19T12:00Z") == T


def test_expect_scores_the_lifecycle_and_input_kinds(tmp_path: Path) -> None:
    """A canary's version_regression and a rename's schema_change are scored like any kind;
    version_changed (info) is a real event, yet never a detection of a regression."""
    path = tmp_path / "changes.csv"
    path.write_text(
        "model_id,change_at,kind\n"
        "m1,2026-11-19T12:00:00Z,version_regression\n"
        "m2,2026-11-19T12:00:00Z,schema_change\n"
    )
    expected = load_expected(path)
    alerts = [
        signal_alert("m1", T + 10 * MIN_MS, "version_changed"),
        signal_alert("m1", T + HOUR_MS, "version_regression"),
        signal_alert("m2", T + 2 * HOUR_MS, "schema_change"),
    ]
    (score, _) = evaluate(hand_made(alerts, []), expected)
    assert (score.detected, score.missed, score.false_alarms) == (2, 0, 0)
    by_model = {(m.model_id, m.kind): m.delay_ms for m in score.matches}
    assert by_model == {("m1", "version_regression"): HOUR_MS, ("m2", "schema_change"): 2 * HOUR_MS}
