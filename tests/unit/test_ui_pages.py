"""The UI's pages rendered from constructed views and read back with a strict HTML parser:
the fleet table's rows and cells, the model page's chart and alerts, escaping of hostile
producer text, and the routes of the server (on loopback, with an in-memory source)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers.html_dom import Node, parse
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.errors import ConfigError, WatchkeeperError
from streams.store.health import SERIES_BUCKET_MS, SeriesPoint
from streams.ui.charts import HEIGHT, WIDTH, health_chart, time_ticks, value_ticks
from streams.ui.pages import (
    FLEET_COLUMNS,
    alert_page,
    fleet_page,
    model_page,
    not_found_page,
)
from streams.ui.server import build_app
from streams.views.fleet import ModelStatus
from streams.views.history import AlertEntry

NOW = 1_795_200_000_000  # 2026-11-20T18:40Z
HOUR = 3_600_000
HOSTILE_IDS = [
    '<script>alert("x")</script>',
    "a/b",
    "../../etc/passwd",
    "\"quoted' & <b>bold</b>",
    "ünïcødé/模型-😀",
    "?q=1#frag",
    "%2F%00",
    "javascript:alert(1)",
    " spaced  out ",
    ".",
    "..",
]


def expected_href(model_id: str) -> str:
    """Quoted into one path segment; dots only would be a path step: in the query."""
    if set(model_id) <= {"."}:
        return "/models?id=" + quote(model_id, safe="")
    return "/models/" + quote(model_id, safe="")


def status(model_id: str, **kw: Any) -> ModelStatus:
    values: dict[str, Any] = {
        "model_id": model_id,
        "owner": "team-fraud",
        "runbook": "https://runbooks.example.com/fraud",
        "orphan": False,
        "model_version": "2.1.0",
        "last_prediction_ms": NOW - 2 * HOUR,
        "label_coverage": 0.873,
        "error_rate": 0.2046,
        "baseline_error_rate": 0.0412,
        "outcomes": 2400,
        "predictions": 3000,
        "open_alerts": ("performance_degradation",),
        "silenced_until_ms": None,
        "silent": False,
        "state": "critical",
    }
    values.update(kw)
    return ModelStatus(**values)


def entry(n: int, **alert: Any) -> AlertEntry:
    body = {
        "alert_id": f"{n:032x}",
        "kind": "performance_degradation",
        "model_id": "fraud-eu",
        "severity": "critical",
        "status": "firing",
        "event_time_ms": NOW - 10 * HOUR + n * HOUR,
        "detected_at": "2026-11-20T09:00:00.000Z",
        "before": {"error_rate": 0.041, "count": 1000},
        "after": {"error_rate": 0.225, "count": 200},
    }
    body.update(alert)
    return AlertEntry(
        alert=body,
        paged=n % 2 == 0,
        acked_by="alice" if n == 2 else None,
        acked_at_ms=NOW - HOUR if n == 2 else None,
        silenced=False,
        incident_open=True,
    )


def point(t_ms: int, error: float | None, coverage: float | None) -> SeriesPoint:
    """A bucket whose counts give (about) ``error`` and ``coverage``; None: no outcomes,
    no predictions."""
    predictions = 0 if coverage is None else 1_000_000
    outcomes = 500 if coverage is None else round(coverage * predictions)
    if error is None:
        outcomes = 0
    elif outcomes == 0:
        outcomes = 1  # an error rate needs an outcome
    return SeriesPoint(t_ms, predictions, outcomes, (error or 0.0) * outcomes)


def series(n: int, start: int = 1_795_000_000_000, **kw: Any) -> list[SeriesPoint]:
    first = start - start % SERIES_BUCKET_MS
    return [
        point(
            first + i * SERIES_BUCKET_MS,
            kw.get("error", lambda i: 0.04 + 0.002 * (i % 7))(i),
            kw.get("coverage", lambda i: 0.8)(i),
        )
        for i in range(n)
    ]


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def rows_of(doc: Node, table_id: str) -> list[Node]:
    return doc.one("table", id=table_id).one("tbody").find_all("tr")


def cells(row: Node) -> list[str]:
    return [td.text() for td in row.find_all("td")]


# --- the fleet ---------------------------------------------------------------------------------


def test_the_fleet_table_has_one_row_per_model_in_the_given_order_with_its_cells() -> None:
    fleet = [
        status("fraud-eu"),
        status(
            "churn-us",
            state="warning",
            owner="team-churn",
            error_rate=0.125,
            baseline_error_rate=0.081,
            label_coverage=None,
            open_alerts=("labels_missing", "prediction_drift"),
            silenced_until_ms=NOW + 3 * HOUR,
        ),
        status(
            "spam-latam",
            state="critical",
            owner=None,
            runbook=None,
            orphan=True,
            model_version=None,
            open_alerts=(),
            silent=True,
            last_prediction_ms=NOW - 3 * 86_400_000,
        ),
        status("eta-eu", state="ok", error_rate=None, baseline_error_rate=None, open_alerts=()),
    ]
    doc = parse(fleet_page(fleet, now_ms=NOW))
    head = [th.text() for th in doc.one("table", id="fleet").one("thead").find_all("th")]
    assert head == list(FLEET_COLUMNS)
    rows = rows_of(doc, "fleet")
    assert [r.attrs["data-model"] for r in rows] == [m.model_id for m in fleet]
    col = {name: i for i, name in enumerate(FLEET_COLUMNS)}
    for row, m in zip(rows, fleet, strict=True):
        got = cells(row)
        assert len(got) == len(FLEET_COLUMNS)
        assert row.attrs["class"] == f"state-{m.state}"
        assert got[col["State"]] == m.state
        assert got[col["Model"]] == m.model_id
        assert got[col["Owner"]] == ("ORPHAN" if m.orphan else m.owner)
        assert got[col["Version"]] == (m.model_version or "—")
        for name, value in (
            ("Label coverage", m.label_coverage),
            ("Error now", m.error_rate),
            ("Baseline", m.baseline_error_rate),
        ):
            assert got[col[name]] == ("—" if value is None else f"{round(value * 100, 1)}%")
        assert got[col["Open alerts"]] == (" ".join(m.open_alerts) or "—")
        last = utc(m.last_prediction_ms).strftime("%Y-%m-%d %H:%M")
        assert last in got[col["Last prediction"]]
        assert ("SILENT" in got[col["Last prediction"]]) == m.silent
        if m.silenced_until_ms:
            assert got[col["Silenced"]] == f"until {utc(m.silenced_until_ms):%Y-%m-%d %H:%M}"
        else:
            assert got[col["Silenced"]] == "—"
    assert "2 h ago" in cells(rows[0])[col["Last prediction"]]
    assert "3 d ago" in cells(rows[2])[col["Last prediction"]]
    # each model links to its own page
    links = [r.find_all("a")[0].attrs["href"] for r in rows]
    assert links == [f"/models/{m.model_id}" for m in fleet]
    summary = doc.one("p", class_="summary").text()
    assert summary.startswith("4 models: 2 critical, 1 warning, 1 ok")
    assert "1 without owner" in summary and "1 silenced" in summary
    # refreshes itself: a page left open on a wall screen stays current
    assert doc.one("meta", **{"http-equiv": "refresh"}).attrs["content"] == "30"


def test_open_incidents_link_to_the_alert_that_opened_them_coloured_by_severity() -> None:
    m = status(
        "fraud-eu",
        open_alerts=("performance_degradation", "labels_missing"),
        open_severities=("critical", "warning"),
        open_alert_ids=("ab" * 16, ""),
    )
    cell = rows_of(parse(fleet_page([m], now_ms=NOW)), "fleet")[0].find_all("td")[8]
    badges = cell.find_all("span", class_="badge")
    assert [b.text() for b in badges] == ["performance_degradation", "labels_missing"]
    assert [b.attrs["class"] for b in badges] == ["badge b-critical", "badge b-warning"]
    assert [a.attrs["href"] for a in cell.find_all("a")] == ["/alerts/" + "ab" * 16]


def test_an_empty_fleet_says_so_instead_of_an_empty_table() -> None:
    doc = parse(fleet_page([], now_ms=NOW))
    assert doc.find_all("table") == []
    message = doc.one(id="no-models").text()
    assert "No models yet" in message and "watchkeeper worker" in message


@pytest.mark.parametrize("model_id", HOSTILE_IDS)
def test_hostile_model_ids_come_out_as_text_and_their_links_quoted(model_id: str) -> None:
    page = fleet_page([status(model_id), status("plain")], now_ms=NOW)
    doc = parse(page)
    row = rows_of(doc, "fleet")[0]
    link = row.one("a")
    href = link.attrs["href"]
    assert href is not None
    assert href == expected_href(model_id)
    tail = href.removeprefix("/models?id=").removeprefix("/models/")
    assert unquote(tail) == model_id
    assert "/" not in tail  # "a/b" is one path segment
    assert link.text() == " ".join(model_id.split())
    assert row.attrs["data-model"] == model_id
    # nothing the id holds became markup
    assert doc.find_all("script") == [] and doc.find_all("b") == []
    assert "<script>" not in page and "<b>" not in page


def test_hostile_owner_messages_and_runbooks_are_inert() -> None:
    evil = '<img src=x onerror="alert(1)">'
    m = status("m", owner=evil, model_version=evil, runbook="javascript:alert(1)")
    alerts = [
        entry(1, model_id="m", message="</td></tr><script>alert(1)</script>", kind=evil),
        entry(2, model_id="m", before={"error_rate": evil}, after={"error_rate": 0.2}),
    ]
    page = model_page(m, series(4), alerts, now_ms=NOW)
    doc = parse(page)
    assert doc.find_all("script") == [] and doc.find_all("img") == []
    assert "<img" not in page and "<script" not in page
    assert doc.one("table", id="status").one("td", class_="owner").text() == evil
    # a runbook that is not http(s) is shown, never linked
    assert not [a for a in doc.find_all("a") if "javascript" in (a.attrs["href"] or "")]
    assert "javascript:alert(1)" in doc.text()
    rows = rows_of(doc, "alerts")
    assert len(rows) == 2
    assert "</td></tr><script>alert(1)</script>" in rows[0].one("td", class_="what").text()
    assert rows[0].one("td", class_="kind").text() == evil


# --- a model's page ----------------------------------------------------------------------------


def test_the_model_page_shows_its_status_chart_and_alerts_in_the_given_order() -> None:
    m = status("fraud-eu")
    alerts = [
        entry(
            3,
            kind="labels_missing",
            severity="warning",
            message="only 12% labelled",
            before={"coverage": 0.82},
            after={"coverage": 0.12},
        ),
        entry(
            2,
            kind="prediction_drift",
            severity="info",
            message="positive rate moved",
            before={"mean": 0.3},
            after={"mean": 0.5},
        ),
        entry(
            1,
            kind="model_silent",
            severity="warning",
            before=None,
            after=None,
            message="no prediction for 600 s",
        ),
    ]
    doc = parse(model_page(m, series(48, start=NOW - 12 * HOUR), alerts, now_ms=NOW))
    assert doc.one("h1").text() == "fraud-eu critical"
    assert cells(rows_of(doc, "status")[0])[1] == "fraud-eu"
    assert len(doc.one(id="chart").find_all("svg")) == 1
    rows = rows_of(doc, "alerts")
    assert [r.one("td", class_="kind").text() for r in rows] == [
        "labels_missing",
        "prediction_drift",
        "model_silent",
    ]
    first = cells(rows[0])
    when = utc(alerts[0].alert["event_time_ms"]).strftime("%Y-%m-%d %H:%M")
    assert first[0] == when
    assert first[2] == "warning" and first[3] == "firing (open)"
    assert first[4] == "coverage 82.0% → 12.0% only 12% labelled"
    assert cells(rows[1])[4] == "mean 0.3 → 0.5 positive rate moved"
    assert cells(rows[2])[4] == "no prediction for 600 s"
    assert [c[5].split()[0] for c in map(cells, rows)] == ["—", "alice", "—"]
    assert [c[6] for c in map(cells, rows)] == ["no", "yes", "no"]
    links = [r.one("td", class_="id").one("a").attrs["href"] for r in rows]
    assert links == [f"/alerts/{e.alert['alert_id']}" for e in alerts]
    # one dashed mark per alert on the chart, at its event time
    assert len(doc.one(id="chart").find_all("line", class_="mark")) == 3


def test_the_paged_column_says_why_an_alert_was_not_paged() -> None:
    alerts = [
        replace(entry(2), escalated=True, page_state="paged"),
        replace(entry(1), page_state="silenced"),
        replace(entry(3), page_state="no_record"),
    ]
    doc = parse(model_page(status("fraud-eu"), [], alerts, now_ms=NOW))
    paged = [r.one("td", class_="paged") for r in rows_of(doc, "alerts")]
    assert [td.text() for td in paged] == ["yes, escalated", "no: silenced", "no"]
    assert "silenced" in (paged[1].attrs["title"] or "")


def test_a_degradation_shows_its_error_rate_before_and_after() -> None:
    doc = parse(model_page(status("fraud-eu"), [], [entry(1)], now_ms=NOW))
    assert cells(rows_of(doc, "alerts")[0])[4] == "error rate 4.1% → 22.5%"


def test_no_history_and_no_alerts_are_said_in_words() -> None:
    doc = parse(model_page(status("new-model"), [], [], now_ms=NOW))
    assert doc.find_all("svg") == []
    assert "No history yet" in doc.one(id="no-series").text()
    assert doc.one(id="no-alerts").text() == "No alerts for this model."
    assert health_chart([]) == ""


def test_the_alert_page_shows_what_became_of_it_and_the_event() -> None:
    e = entry(2, message="<b>x</b>")
    doc = parse(alert_page(e, now_ms=NOW))
    fields = dict(
        zip(
            [dt.text() for dt in doc.find_all("dt")],
            [dd.text() for dd in doc.find_all("dd")],
            strict=True,
        )
    )
    assert fields["Alert id"] == e.alert["alert_id"]
    assert fields["Paged"] == "yes"
    assert fields["Acknowledged"] == f"by alice at {utc(NOW - HOUR):%Y-%m-%d %H:%M} UTC"
    assert fields["Change"] == "error rate 4.1% → 22.5%"
    assert fields["Message"] == "<b>x</b>"
    assert '"alert_id": "' + e.alert["alert_id"] in doc.one("pre").text()


def test_not_found_names_what_was_asked_for_escaped() -> None:
    doc = parse(not_found_page("No model '<script>'", now_ms=NOW))
    assert doc.one(id="not-found").text() == "No model '<script>'"
    assert doc.find_all("script") == []


# --- the chart ---------------------------------------------------------------------------------


def polylines(svg: Node, name: str) -> list[list[tuple[float, float]]]:
    out = []
    for line in svg.find_all("polyline", class_=name):
        points = (line.attrs["points"] or "").split()
        out.append([(float(x), float(y)) for x, y in (p.split(",") for p in points)])
    return out


def chart_of(points: list[SeriesPoint]) -> Node:
    return parse(health_chart(points)).one("svg")


def test_chart_points_are_inside_the_view_box_and_ordered_by_time() -> None:
    points = series(30, error=lambda i: [0.04, 0.31, 0.0, 0.12][i % 4])
    svg = chart_of(list(reversed(points)))  # any order in, oldest first out
    assert svg.attrs["viewbox"] == f"0 0 {WIDTH} {HEIGHT}"
    (error,) = polylines(svg, "error")
    (coverage,) = polylines(svg, "coverage")
    for line in (error, coverage):
        assert len(line) == 30
        assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for x, y in line)
        assert [x for x, _ in line] == sorted(x for x, _ in line)
        assert len({x for x, _ in line}) == 30
    # the panels share the time axis and do not overlap: error above, coverage below
    assert [x for x, _ in error] == [x for x, _ in coverage]
    assert max(y for _, y in error) < min(y for _, y in coverage)
    # higher error is drawn higher (smaller y), and zero sits on the panel's floor
    by_value = sorted(zip([p.error_rate for p in points], [y for _, y in error], strict=True))
    assert [y for _, y in by_value] == sorted((y for _, y in by_value), reverse=True)


def test_the_axes_are_labelled_with_utc_times() -> None:
    start = int(datetime(2026, 11, 18, 11, 0, tzinfo=UTC).timestamp() * 1000)
    svg = chart_of(series(26 * 3_600_000 // SERIES_BUCKET_MS, start=start))  # 26 hours
    titles = [t.text() for t in svg.find_all("text", class_="axis-title")]
    assert titles == ["error rate", "label coverage", "event time (UTC)"]
    ticks = [t.text() for t in svg.find_all("text", class_="xtick")]
    assert ticks[0] == "12:00 2026-11-18"  # the first tick carries its date
    assert "00:00 2026-11-19" in ticks  # and so does the first of a new day
    assert all(re.fullmatch(r"\d\d:\d\d( \d{4}-\d\d-\d\d)?", t) for t in ticks)
    ytick = [t.text() for t in svg.find_all("text", class_="ytick")]
    assert ytick[-5:] == ["0%", "25%", "50%", "75%", "100%"]  # coverage panel


def test_unknown_coverage_breaks_the_line_instead_of_drawing_zero() -> None:
    svg = chart_of(series(12, coverage=lambda i: None if 4 <= i < 7 else 0.9))
    runs = polylines(svg, "coverage")
    assert [len(r) for r in runs] == [4, 5]
    assert len(polylines(svg, "error")[0]) == 12


def test_a_bucket_without_outcomes_breaks_the_error_line() -> None:
    """Labels of the newest buckets are not in yet: no error rate is known there, and the
    coverage panel says how little is labelled so far."""
    points = series(10, error=lambda i: None if i in (3, 8, 9) else 0.1)
    svg = chart_of(points)
    assert [len(r) for r in polylines(svg, "error")] == [3, 4]
    assert len(polylines(svg, "coverage")[0]) == 10
    titles = [t.text() for t in svg.find_all("text", class_="panel-title")]
    assert titles[1] == "labelled so far (by prediction time)"


def test_a_points_rates_come_from_its_counts() -> None:
    assert SeriesPoint(0, 40, 10, 2.5).error_rate == 0.25
    assert SeriesPoint(0, 40, 10, 2.5).label_coverage == 0.25
    assert SeriesPoint(0, 40, 0, 0.0).error_rate is None  # no labels yet: unknown, not 0
    assert SeriesPoint(0, 40, 0, 0.0).label_coverage == 0.0
    assert SeriesPoint(0, 0, 3, 1.0).label_coverage is None
    assert SeriesPoint(0, 2, 3, 1.0).label_coverage == 1.0  # capped


def test_a_single_point_is_drawn_inside_the_chart() -> None:
    svg = chart_of(series(1))
    ((x, y),) = polylines(svg, "error")[0]
    assert 0 < x < WIDTH and 0 < y < HEIGHT


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2000),
            st.floats(0, 1),
            st.one_of(st.none(), st.floats(0, 1)),
        ),
        min_size=1,
        max_size=60,
        unique_by=lambda t: t[0],
    )
)
def test_any_series_draws_inside_the_view_box_in_time_order(
    raw: list[tuple[int, float, float | None]],
) -> None:
    points = [
        point(
            1_795_000_000_000 - 1_795_000_000_000 % SERIES_BUCKET_MS + k * SERIES_BUCKET_MS,
            e,
            c,
        )
        for k, e, c in raw
    ]
    svg = chart_of(points)
    for name in ("error", "coverage"):
        drawn = [pt for line in polylines(svg, name) for pt in line]
        assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for x, y in drawn)
        xs = [x for x, _ in drawn]
        assert xs == sorted(xs)
    assert len([pt for line in polylines(svg, "error") for pt in line]) == len(points)


@given(st.floats(1e-6, 10))
def test_value_ticks_are_round_and_cover_the_top(top: float) -> None:
    ticks = value_ticks(top)
    assert ticks[0] == 0 and ticks[-1] >= top * (1 - 1e-9)
    assert 2 <= len(ticks) <= 6
    step = ticks[1]
    mantissa = step / 10 ** __import__("math").floor(__import__("math").log10(step))
    assert round(mantissa, 6) in (1, 2, 5, 10)


def test_time_ticks_fall_on_whole_utc_hours() -> None:
    start = int(datetime(2026, 11, 18, 11, 7, tzinfo=UTC).timestamp() * 1000)
    ticks = time_ticks(start, start + 48 * HOUR)
    assert 2 <= len(ticks) <= 8
    assert all(utc(t).minute == 0 and utc(t).hour % 6 == 0 for t in ticks)


# --- the server's routes -----------------------------------------------------------------------


class Source:
    """The views as constructed values (the integration test reads the real ones)."""

    def __init__(
        self,
        fleet: list[ModelStatus],
        fail: Exception | None = None,
        alerts_fail: Exception | None = None,
    ) -> None:
        self._fleet = fleet
        self.fail = fail
        self.alerts_fail = alerts_fail
        self.alerts_by_model = {
            m.model_id: [replace(entry(1), alert={**entry(1).alert, "model_id": m.model_id})]
            for m in fleet
        }

    async def fleet(self) -> list[ModelStatus]:
        if self.fail is not None:
            raise self.fail
        return self._fleet

    async def series(self, model_id: str) -> list[SeriesPoint]:
        return series(8)

    async def alerts(self, model_id: str) -> list[AlertEntry]:
        if self.alerts_fail is not None:
            raise self.alerts_fail
        return self.alerts_by_model[model_id]

    async def alert(self, alert_id: str) -> AlertEntry:
        if self.alerts_fail is not None:
            raise self.alerts_fail
        for entries in self.alerts_by_model.values():
            for e in entries:
                if e.alert["alert_id"].startswith(alert_id):
                    return e
        raise ConfigError(f"no alert with id or prefix {alert_id!r}")


async def client_for(source: Source) -> TestClient:
    client = TestClient(TestServer(build_app(source, clock=lambda: NOW / 1000), host="127.0.0.1"))
    await client.start_server()
    return client


async def test_routes_serve_the_pages_with_ids_quoted_and_scripts_forbidden() -> None:
    fleet = [status(i) for i in HOSTILE_IDS]
    client = await client_for(Source(fleet))
    try:
        response = await client.get("/")
        assert response.status == 200
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        doc = parse(await response.text())
        hrefs = [r.one("a").attrs["href"] for r in rows_of(doc, "fleet")]
        for model_id, href in zip(HOSTILE_IDS, hrefs, strict=True):
            assert href is not None
            page = await client.get(href)  # the link as a browser follows it
            assert page.status == 200, model_id
            body = parse(await page.text())
            assert (
                body.one("table", id="status")
                .one("tr", class_="state-critical")
                .attrs["data-model"]
                == model_id
            )
        health = await client.get("/healthz")
        assert health.status == 200 and await health.text() == "ok"
        assert (await client.post("/")).status == 405  # read-only
    finally:
        await client.close()


async def test_unknown_models_and_alerts_are_404_pages() -> None:
    client = await client_for(Source([status("fraud-eu")]))
    try:
        missing = await client.get("/models/" + quote("<script>nope</script>", safe=""))
        assert missing.status == 404
        doc = parse(await missing.text())
        assert "<script>nope</script>" in doc.one(id="not-found").text()
        assert doc.find_all("script") == []
        assert (await client.get("/alerts/not-hex")).status == 404
        assert (await client.get("/alerts/ffff")).status == 404
        found = await client.get("/alerts/" + f"{1:032x}"[:12])
        assert found.status == 200
        assert (await client.get("/nothing/here")).status == 404
    finally:
        await client.close()


async def test_a_store_that_does_not_answer_is_a_503_page_not_a_traceback() -> None:
    client = await client_for(Source([], fail=RedisConnectionError("connection refused")))
    try:
        response = await client.get("/")
        assert response.status == 503
        doc = parse(await response.text())
        assert "connection refused" in doc.one(id="error").text()
        assert response.headers["Content-Security-Policy"]
    finally:
        await client.close()


async def test_a_broker_that_does_not_answer_still_shows_the_status_and_chart() -> None:
    broker_down = WatchkeeperError("cannot reach the broker at kafka://127.0.0.1:1: refused")
    client = await client_for(Source([status("fraud-eu")], alerts_fail=broker_down))
    try:
        response = await client.get("/models/fraud-eu")
        assert response.status == 200
        doc = parse(await response.text())
        assert len(rows_of(doc, "status")) == 1
        assert doc.one(id="chart").find_all("polyline", class_="error")
        assert "cannot reach the broker" in doc.one(id="alerts-unavailable").text()
        assert doc.find_all("table", id="alerts") == []
        # an alert's own page has nothing else to show: 503, not "not found"
        missing = await client.get("/alerts/" + "ab" * 16)
        assert missing.status == 503
        assert "cannot reach the broker" in parse(await missing.text()).one(id="error").text()
    finally:
        await client.close()
