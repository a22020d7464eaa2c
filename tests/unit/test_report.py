"""The maintenance scorecard assembled from constructed views (streams.views.report), and
its Markdown, JSON and HTML forms: orphans first, counts, time to acknowledge, versions,
overdue items, and hostile ids that must stay text."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers.html_dom import parse

from streams.cli.main import build_parser
from streams.cli.report import render
from streams.errors import ConfigError
from streams.notify.digest import period_label, period_start
from streams.ui.pages import fleet_page, report_page
from streams.ui.server import build_app
from streams.views.fleet import ModelStatus
from streams.views.history import AlertEntry
from streams.views.report import NOBODY, Report, build_report
from streams.views.report_text import (
    digest_text,
    duration_text,
    fleet_digest_text,
    md_cell,
    to_markdown,
)

NOW = 1_795_200_000_000  # 2026-11-20T18:40Z
HOUR = 3_600_000
MIN = 60_000
SINCE = NOW - 7 * 24 * HOUR
HOSTILE = [
    '<script>alert("x")</script>',
    "a|b\nc",
    "\"quoted' & <b>bold</b>",
    "`tick` *star* [link](http://x)",
]


def status(model_id: str, **kw: Any) -> ModelStatus:
    values: dict[str, Any] = {
        "model_id": model_id,
        "owner": "team-fraud",
        "runbook": "https://runbooks.example.com/fraud",
        "orphan": False,
        "model_version": "2.1.0",
        "last_prediction_ms": NOW - HOUR,
        "label_coverage": 0.9,
        "error_rate": 0.2,
        "baseline_error_rate": 0.05,
        "outcomes": 100,
        "predictions": 200,
        "open_alerts": (),
        "silenced_until_ms": None,
        "silent": False,
        "state": "ok",
    }
    values.update(kw)
    return ModelStatus(**values)


_ids = iter(range(1, 10_000))


def entry(
    model_id: str,
    kind: str = "performance_degradation",
    *,
    at: int,
    paged: bool = True,
    acked: tuple[str, int] | None = None,
    state: str | None = None,
    **alert: Any,
) -> AlertEntry:
    body = {
        "alert_id": f"{next(_ids):032x}",
        "model_id": model_id,
        "kind": kind,
        "severity": "critical",
        "status": "firing",
        "model_version": "2.1.0",
        **alert,
    }
    return AlertEntry(
        alert=body,
        paged=paged,
        acked_by=None if acked is None else acked[0],
        acked_at_ms=None if acked is None else acked[1],
        silenced=False,
        incident_open=False,
        page_state=state or ("paged" if paged else "cooldown"),
        paged_at_ms=at + 1000 if paged else None,
        detected_at_ms=at,
    )


@dataclass(frozen=True)
class Late:  # the shape of streams.store.maintenance.Overdue
    model_id: str
    owner: str
    reason: str
    since_ms: int
    message: str


def scenario() -> Report:
    models = [
        status("fraud-eu", open_alerts=("performance_degradation",), state="critical"),
        status("fraud-us", owner="team-fraud", label_coverage=0.5),
        status("churn", owner="Alice", error_rate=None, baseline_error_rate=None),
        status("stray-b", owner=None, orphan=True, state="critical"),
        status("registry-only", owner=None, orphan=False, state="unknown"),
        status("stray-a", owner=None, orphan=True, state="critical"),
    ]
    entries = [
        # fraud-eu: paged at t, acked 10 min later; paged again, acked 30 min later; one
        # paged nobody acked; the incident is still open
        entry("fraud-eu", at=NOW - 48 * HOUR, acked=("alice", NOW - 48 * HOUR + 10 * MIN)),
        entry("fraud-eu", at=NOW - 20 * HOUR, acked=("bob", NOW - 20 * HOUR + 30 * MIN)),
        entry("fraud-eu", at=NOW - 2 * HOUR),
        entry("fraud-eu", at=NOW - HOUR, paged=False),  # cooldown: no page
        # fraud-us: a drift incident opened and resolved, two versions seen
        entry("fraud-us", "prediction_drift", at=NOW - 30 * HOUR, model_version="1.0"),
        entry(
            "fraud-us",
            "prediction_drift",
            at=NOW - 29 * HOUR,
            status="resolved",
            model_version="1.1",
            state="paged",
        ),
        # churn: version_changed alerts say which versions shipped (not the 9.9 seen)
        entry(
            "churn",
            "version_changed",
            at=NOW - 5 * HOUR,
            paged=False,
            state="info",
            severity="info",
            model_version="3.0",
        ),
        entry(
            "churn",
            "version_changed",
            at=NOW - 4 * HOUR,
            paged=False,
            state="info",
            severity="info",
            model_version="3.0",  # as the worker knew it; the change names the new one
            after={"model_version": "3.1"},
        ),
        entry(
            "churn",
            "labels_missing",
            at=NOW - 3 * HOUR,
            paged=False,
            state="silenced",
            model_version="9.9",
        ),  # fmt: skip
        # before the window: ignored
        entry("churn", at=SINCE - HOUR, acked=("carol", SINCE)),
    ]
    overdue = [
        Late("churn", "Alice", "unconfirmed", NOW - 100 * 24 * HOUR, "not confirmed in 90d"),
        Late("gone", "Alice", "not_retrained", NOW - 400 * 24 * HOUR, "version 1 is 400d old"),
    ]
    return build_report(
        models,
        entries,
        since_ms=SINCE,
        now_ms=NOW,
        owner_since={"fraud-eu": NOW - 30 * 24 * HOUR, "churn": NOW - 2 * 24 * HOUR},
        confirmed={"fraud-eu": ("dana", NOW - 10 * 24 * HOUR)},
        overdue=overdue,
    )


def test_orphans_come_first_under_nobody_then_owners_by_name() -> None:
    report = scenario()
    assert [s.owner for s in report.scorecards] == [NOBODY, "Alice", "team-fraud"]
    nobody = report.scorecards[0]
    # orphans before the registry-only model, each group in the fleet's order
    assert [m.model_id for m in nobody.models] == ["stray-b", "stray-a", "registry-only"]
    assert nobody.totals().orphans == 2
    assert all(m.watched_by == () for m in nobody.models)


def test_incidents_time_to_ack_and_unacked_pages() -> None:
    report = scenario()
    fraud = report.for_owner("team-fraud")
    eu, us = fraud.scorecards[0].models
    assert (eu.model_id, us.model_id) == ("fraud-eu", "fraud-us")
    assert [(i.kind, i.state) for i in eu.incidents] == [("performance_degradation", "open")]
    assert eu.incidents[0].opened_ms == NOW - 48 * HOUR
    assert [(i.kind, i.state) for i in us.incidents] == [("prediction_drift", "resolved")]
    assert us.incidents[0].resolved_ms == NOW - 29 * HOUR
    assert eu.pages == 3 and eu.alerts == 4
    assert eu.ack_seconds == (600.0, 1800.0)
    assert eu.ack_median_s == 1200.0
    assert eu.unacked == 1
    card = fraud.scorecards[0].totals()
    assert (card.open_incidents, card.resolved_incidents) == (1, 1)
    assert card.ack_median_s == 1200.0  # median over every acked page of the owner
    assert card.unacked == 1 + 1  # fraud-us's drift page was never acked
    assert card.min_label_coverage == 0.5
    watchers = [(w.name, w.role, w.at_ms) for w in eu.watched_by]
    assert watchers == [
        ("team-fraud", "owner", NOW - 30 * 24 * HOUR),
        ("dana", "confirmed", NOW - 10 * 24 * HOUR),
        ("alice", "acked", NOW - 48 * HOUR + 10 * MIN),
        ("bob", "acked", NOW - 20 * HOUR + 30 * MIN),
    ]


def test_versions_from_version_changed_alerts_else_from_the_alerts() -> None:
    report = scenario()
    churn = report.for_owner("Alice").scorecards[0].models[0]
    assert churn.versions == ("3.0", "3.1")  # not 9.9: version_changed alerts exist
    us = report.for_owner("team-fraud").scorecards[0].models[1]
    assert us.versions == ("1.0", "1.1")
    assert churn.ack_seconds == ()  # carol's ack predates the window


def test_overdue_items_land_on_their_models_even_unseen_ones() -> None:
    alice = scenario().for_owner("Alice").scorecards[0]
    assert [m.model_id for m in alice.models] == ["churn", "gone"]
    assert [o.reason for o in alice.models[0].overdue] == ["unconfirmed"]
    assert [o.reason for o in alice.models[1].overdue] == ["not_retrained"]
    assert alice.totals().overdue == 2


def test_unknown_owner_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no such owner.*Alice"):
        scenario().for_owner("mallory")


def test_json_is_the_whole_report_in_order() -> None:
    data = orjson.loads(render(scenario(), "json"))
    assert [s["owner"] for s in data["scorecards"]] == [NOBODY, "Alice", "team-fraud"]
    fraud = data["scorecards"][2]
    assert fraud["totals"]["open_incidents"] == 1
    assert fraud["totals"]["ack_median_s"] == 1200.0
    eu = fraud["models"][0]
    assert eu["ack_seconds"] == [600.0, 1800.0] and eu["unacked"] == 1
    assert eu["watched_by"][2] == {"name": "alice", "role": "acked", "at_ms": eu_ack()}
    assert data["since_ms"] == SINCE and data["now_ms"] == NOW


def eu_ack() -> int:
    return NOW - 48 * HOUR + 10 * MIN


def test_markdown_lists_every_owner_with_a_totals_line_and_a_row_per_model() -> None:
    text = to_markdown(scenario())
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## nobody (no registered owner)", "## Alice", "## team-fraud"]
    eu = next(line for line in text.splitlines() if line.startswith("| fraud-eu"))
    assert "| 1 / 0 |" in eu and "20m (2 acked)" in eu and "| 1 of 3 |" in eu
    assert "dana confirmed 2026-11-10 18:40Z; alice acked 2026-11-18 18:50Z" in eu
    assert "stray-b (ORPHAN)" in text


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_ids_stay_one_markdown_cell(hostile: str) -> None:
    report = build_report(
        [status(hostile, owner=hostile)], [], since_ms=SINCE, now_ms=NOW
    )  # fmt: skip
    rows = [line for line in to_markdown(report).splitlines() if line.startswith("| ")]
    header, row = rows
    # escaped pipes do not split cells: as many cells as the header
    assert len(_cells(row)) == len(_cells(header))
    assert "<script>" not in to_markdown(report)
    assert md_cell(hostile).count("\n") == 0


def _cells(row: str) -> list[str]:
    out, cur, i = [], "", 0
    while i < len(row):
        if row[i] == "\\" and i + 1 < len(row):
            cur += row[i : i + 2]
            i += 2
            continue
        if row[i] == "|":
            out.append(cur)
            cur = ""
        else:
            cur += row[i]
        i += 1
    return out


@pytest.mark.parametrize("hostile", HOSTILE)
def test_html_escapes_hostile_ids_and_owners(hostile: str) -> None:
    late = Late(hostile, hostile, "unconfirmed", NOW, hostile)
    report = build_report(
        [status(hostile, owner=hostile, orphan=False)],
        [entry(hostile, at=NOW - HOUR, acked=(hostile, NOW - HOUR + MIN))],
        since_ms=SINCE,
        now_ms=NOW,
        overdue=[late],
    )
    page = report_page(report, now_ms=NOW)
    doc = parse(page)
    assert doc.find_all("script") == []
    section = doc.one("section", class_="scorecard")
    assert section.attrs["data-owner"] == hostile
    assert section.one("h2").text() == " ".join(hostile.split())
    row = section.one("tr", class_="state-warning")
    assert row.attrs["data-model"] == hostile
    assert hostile.split()[0] in row.one("td", class_="watched").text()
    assert render(report, "html") == page


def test_empty_report_says_so_everywhere() -> None:
    empty = build_report([], [], since_ms=SINCE, now_ms=NOW)
    assert "No models" in to_markdown(empty)
    assert parse(report_page(empty, now_ms=NOW)).one(id="no-models")
    assert orjson.loads(render(empty, "json"))["scorecards"] == []


def test_the_fleet_page_links_to_the_scorecard() -> None:
    for models in ([], [status("fraud-eu")]):
        doc = parse(fleet_page(models, now_ms=NOW))
        assert doc.one("a", id="report-link").attrs["href"] == "/report"


def test_digest_texts_carry_totals_and_the_command() -> None:
    report = scenario()
    fraud = report.for_owner("team-fraud").scorecards[0]
    text = digest_text(fraud, report, since="7d")
    assert "incidents 1 open, 1 resolved" in text
    assert "4 pages, 2 unacknowledged, median time to acknowledge 20m" in text
    alice = report.for_owner("Alice").scorecards[0]
    assert "no pages" in digest_text(alice, report, since="7d")
    assert "Needing attention: fraud-eu, fraud-us" in text
    assert text.endswith("watchkeeper report --since 7d --owner team-fraud")
    odd = report.scorecards[1].models[0]
    assert odd.model_id == "churn"
    everyone = fleet_digest_text(report, since="7d")
    assert everyone.startswith("Watchkeeper scorecard, every owner")
    assert everyone.index("NOBODY") < everyone.index("Alice") < everyone.index("team-fraud")
    assert "orphans: stray-b, stray-a" in everyone
    hostile = build_report([status("m", owner="a'; rm -rf /")], [], since_ms=SINCE, now_ms=NOW)
    command = digest_text(hostile.scorecards[0], hostile, since="7d").split(": ")[-1]
    assert shlex.split(command)[-1] == "a'; rm -rf /"


def test_durations_read_as_people_write_them() -> None:
    assert [duration_text(s) for s in (None, 0, 59, 600, 3725, 90_000)] == [
        "-", "0s", "59s", "10m", "1h2m", "1d1h",
    ]  # fmt: skip


def test_digest_periods_start_on_mondays_and_weeks_are_named_iso() -> None:
    week = 7 * 86_400
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC).timestamp()  # a Wednesday
    start = period_start(now, week)
    assert datetime.fromtimestamp(start, tz=UTC) == datetime(2026, 11, 30, tzinfo=UTC)
    assert period_label(start - week, week) == "2026-W48"
    assert period_start(start, week) == start  # a boundary belongs to the new period
    assert period_start(now + 30, 60) == now  # short periods (tests) align on minutes too


def test_report_command_parses_and_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["report"])
    assert (args.since, args.owner, args.format, args.out) == ("7d", None, "md", None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["report", "--format", "pdf"])
    from streams.cli.main import main

    assert main(["report", "--since", "soon", "--redis", "redis://127.0.0.1:1"]) == 2
    assert "--since 'soon'" in capsys.readouterr().err


class Reports:
    """A UI source with a scorecard (the route test)."""

    def __init__(self, report: Report) -> None:
        self.built = report
        self.asked: list[int] = []

    async def fleet(self) -> list[ModelStatus]:
        return []

    async def series(self, model_id: str) -> list[Any]:
        return []

    async def alerts(self, model_id: str) -> list[AlertEntry]:
        return []

    async def alert(self, alert_id: str) -> AlertEntry:
        raise ConfigError("none")

    async def report(self, since_ms: int) -> Report:
        self.asked.append(since_ms)
        return self.built


async def test_report_route_serves_the_scorecard_filtered_by_owner() -> None:
    source = Reports(scenario())
    client = TestClient(TestServer(build_app(source, clock=lambda: NOW / 1000), host="127.0.0.1"))
    await client.start_server()
    try:
        page = await client.get("/report")
        assert page.status == 200
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        owners = [s.attrs["data-owner"] for s in parse(await page.text()).find_all("section")]
        assert owners == [NOBODY, "Alice", "team-fraud"]
        assert source.asked == [SINCE]
        one = await client.get("/report", params={"owner": "Alice", "since": "1d"})
        assert [s.attrs["data-owner"] for s in parse(await one.text()).find_all("section")] == [
            "Alice"
        ]
        assert source.asked[-1] == NOW - 24 * HOUR
        assert (await client.get("/report", params={"owner": "mallory"})).status == 404
        assert (await client.get("/report", params={"since": "soon"})).status == 400
    finally:
        await client.close()
