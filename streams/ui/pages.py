"""The UI's pages as HTML strings, pure functions of the views' dataclasses: the fleet
table, a model's page and an alert's page.

Model ids, owners, messages and every other value come from producers and operators, so
everything put into the page goes through :func:`html.escape` and ids in links through
:func:`urllib.parse.quote`; the server also forbids scripts (Content-Security-Policy)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from streams.engine.series import SERIES_BUCKET_MS
from streams.store.health import SeriesPoint
from streams.ui.charts import ChartMark, health_chart, sparkline
from streams.views.fleet import ModelStatus
from streams.views.history import PAGE_STATES, AlertEntry
from streams.views.report import NOBODY, ModelCard, Report, Scorecard
from streams.views.report_text import REPORT_COLUMNS, duration_text, totals_text, watch_lines

__all__ = [
    "FLEET_COLUMNS",
    "alert_page",
    "change_text",
    "error_page",
    "fleet_page",
    "model_href",
    "model_page",
    "not_found_page",
    "report_page",
]

BUCKET_TEXT = "hour" if SERIES_BUCKET_MS == 3_600_000 else f"{SERIES_BUCKET_MS // 60_000} minutes"

REFRESH_S = 30
FLEET_COLUMNS = (
    "State",
    "Model",
    "Owner",
    "Version",
    "Last prediction",
    "Label coverage",
    "Error now",
    "Baseline",
    "Open alerts",
    "Silenced",
)
ALERT_COLUMNS = ("Time (UTC)", "Kind", "Severity", "Status", "What", "Acked by", "Paged", "Id")
DASH = "\u2014"
_STATES = ("critical", "warning", "ok", "unknown")
SEVERITIES = ("critical", "warning", "info")
SHORT_ID = 32  # model ids up to this long stay on one line in the tables
REPORT_LINK = (
    '<p class="nav"><a href="/report" id="report-link">Maintenance scorecard</a> '
    '<span class="muted">who watched each model this week</span></p>'
)

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0; color: #1d1d1f; background: #f4f5f7; }
header { background: #1f2937; color: #fff; padding: 10px 24px; display: flex;
  gap: 18px; align-items: baseline; }
header a { color: #fff; text-decoration: none; font-weight: 700; font-size: 17px; }
header .where { color: #cbd5e1; }
main { padding: 16px 24px 32px; }
h1 { font-size: 20px; margin: 4px 0 12px; overflow-wrap: anywhere; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.summary { margin: 10px 0 12px; color: #374151; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.08);
  width: 100%; }
th, td { padding: 6px 8px; border-bottom: 1px solid #e5e7eb; text-align: left;
  vertical-align: top; }
th { background: #f9fafb; font-weight: 600; color: #374151; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.model { overflow-wrap: break-word; }
td.model.short { white-space: nowrap; }
td.owner, td.version { white-space: nowrap; }
td.last .muted { font-size: 12px; white-space: nowrap; }
tr.state-critical td:first-child { border-left: 4px solid #c62828; }
tr.state-warning td:first-child { border-left: 4px solid #ef6c00; }
tr.state-ok td:first-child { border-left: 4px solid #2e7d32; }
tr.state-unknown td:first-child { border-left: 4px solid #9e9e9e; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px;
  font-weight: 600; white-space: nowrap; margin: 1px 2px 1px 0; }
.b-critical { background: #fdecea; color: #b71c1c; }
.b-warning { background: #fff3e0; color: #bf4f00; }
.b-ok { background: #e8f5e9; color: #1b5e20; }
.b-unknown, .b-info { background: #eceff1; color: #455a64; }
.b-orphan { background: #f3e5f5; color: #6a1b9a; }
.b-silent { background: #fff8e1; color: #8d6e00; }
.b-open { background: #e3f2fd; color: #0d47a1; }
.muted { color: #6b7280; }
svg.spark { vertical-align: middle; margin-left: 4px; }
.empty { background: #fff; padding: 18px; border: 1px dashed #cbd5e1; color: #374151; }
.chart-box { background: #fff; padding: 8px; box-shadow: 0 1px 2px rgba(0,0,0,.08);
  overflow-x: auto; }
.legend { color: #374151; margin: 4px 0 0; font-size: 13px; }
.legend span { margin-right: 14px; }
pre { background: #fff; padding: 12px; overflow-x: auto; border: 1px solid #e5e7eb; }
dl.fields { display: grid; grid-template-columns: max-content auto; gap: 4px 16px;
  background: #fff; padding: 12px; }
dl.fields dt { font-weight: 600; color: #374151; }
dl.fields dd { margin: 0; overflow-wrap: anywhere; }
footer { color: #6b7280; padding: 0 24px 24px; font-size: 12px; }
"""


def model_href(model_id: str) -> str:
    """The model page's path; ids may hold ``/``, ``?``, ``#`` or anything else. An id of
    dots only (``.``, ``..``) goes in the query: browsers resolve it as a path step."""
    if model_id.strip(".") == "":
        return "/models?id=" + quote(model_id, safe="")
    return "/models/" + quote(model_id, safe="")


def _alert_href(alert_id: str) -> str:
    return "/alerts/" + quote(alert_id, safe="")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _time(ms: int | None) -> str:
    if not ms:
        return DASH
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}"


def _age(ms: int, now_ms: int) -> str:
    """``3 h ago``, or ``in 2 d`` for event times ahead of the clock (a producer's clock)."""
    delta = (now_ms - ms) / 1000
    ahead, delta = delta < 0, abs(delta)
    if delta < 90:
        return "just now"
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if delta >= size * 1.5 or unit == "min":
            amount = f"{delta / size:.0f} {unit}"
            break
    return f"in {amount}" if ahead else f"{amount} ago"


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f}%"


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge b-{_e(kind)}">{_e(text)}</span>'


def _page(title: str, body: str, *, now_ms: int, refresh: bool = True, where: str = "") -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    note = f"refreshes every {REFRESH_S} s · " if refresh else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{_e(title)} · Watchkeeper</title><style>{_CSS}</style></head>\n"
        '<body><header><a href="/">Watchkeeper</a>'
        f'<span class="where">{_e(where)}</span></header>\n'
        f"<main>\n{body}\n</main>\n"
        f"<footer>Read-only view · rendered {_time(now_ms)} UTC · {note}"
        "times are UTC</footer>\n</body></html>\n"
    )


def _status_cells(m: ModelStatus, now_ms: int, *, link: bool) -> str:
    """The cells of one model's row, in :data:`FLEET_COLUMNS` order."""
    name = _e(m.model_id)
    model = f'<a href="{_e(model_href(m.model_id))}">{name}</a>' if link else name
    owner = _badge("ORPHAN", "orphan") if m.orphan else _e(m.owner) if m.owner else DASH
    if m.last_prediction_ms:
        last = (
            f'<span title="{_time(m.last_prediction_ms)} UTC">'
            f"{_e(_age(m.last_prediction_ms, now_ms))}</span>"
            f'<br>\n<span class="muted">{_time(m.last_prediction_ms)}</span>'
        )
    else:
        last = DASH
    if m.silent:
        last += " " + _badge("SILENT", "silent")
    opened = " ".join(_open_badge(m, i) for i in range(len(m.open_alerts))) or DASH
    silenced = f"until {_time(m.silenced_until_ms)}" if m.silenced_until_ms else DASH
    cells = (
        ("state", _badge(m.state, m.state if m.state in _STATES else "unknown")),
        ("model short" if len(m.model_id) <= SHORT_ID else "model", model),
        ("owner", owner),
        ("version", _e(m.model_version) if m.model_version else DASH),
        ("last", last),
        ("num coverage", _pct(m.label_coverage)),
        ("num error", _pct(m.error_rate) + sparkline(m.trend)),
        ("num baseline", _pct(m.baseline_error_rate)),
        ("alerts", opened),
        ("silenced", silenced),
    )
    return "".join(f'<td class="{cls}">{html}</td>' for cls, html in cells)


def _open_badge(m: ModelStatus, i: int) -> str:
    """An open incident's kind, coloured by its severity, linking to the alert that
    opened it when the status knows it."""
    kind = m.open_alerts[i]
    severity = m.open_severities[i] if i < len(m.open_severities) else "open"
    badge = _badge(kind, severity if severity in SEVERITIES else "open")
    alert_id = m.open_alert_ids[i] if i < len(m.open_alert_ids) else ""
    return f'<a href="{_e(_alert_href(alert_id))}">{badge}</a>' if alert_id else badge


def _row(m: ModelStatus, now_ms: int, *, link: bool = True) -> str:
    state = m.state if m.state in _STATES else "unknown"
    return (
        f'<tr class="state-{state}" data-model="{_e(m.model_id)}">'
        f"{_status_cells(m, now_ms, link=link)}</tr>"
    )


def _head(columns: Iterable[str]) -> str:
    return "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr></thead>"


def fleet_page(models: Sequence[ModelStatus], *, now_ms: int) -> str:
    """The fleet table, one row per model in the order given (worst first from
    :func:`~streams.views.fleet.fleet_status`), each model linking to its page."""
    if not models:
        body = (
            "<h1>Fleet</h1>"
            f"{REPORT_LINK}"
            '<p class="empty" id="no-models">No models yet: no worker has written a health '
            "snapshot and no owner is registered. Start a worker (<code>watchkeeper worker"
            "</code>) and send predictions, or register owners (<code>watchkeeper owners "
            "set</code>).</p>"
        )
        return _page("Fleet", body, now_ms=now_ms, where="fleet")
    states = {s: sum(1 for m in models if m.state == s) for s in _STATES}
    counts = ", ".join(f"{n} {s}" for s, n in states.items() if n)
    orphans = sum(1 for m in models if m.orphan)
    silenced = sum(1 for m in models if m.silenced_until_ms)
    extra = "".join(
        f" · {n} {what}" for n, what in ((orphans, "without owner"), (silenced, "silenced")) if n
    )
    rows = "\n".join(_row(m, now_ms) for m in models)
    body = (
        "<h1>Fleet</h1>"
        f"{REPORT_LINK}"
        f'<p class="summary">{len(models)} model{"s" if len(models) != 1 else ""}: '
        f"{_e(counts)}{_e(extra)}. Worst first.</p>\n"
        f'<table id="fleet">{_head(FLEET_COLUMNS)}<tbody>\n{rows}\n</tbody></table>'
    )
    return _page("Fleet", body, now_ms=now_ms, where="fleet")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _e(value)
    return f"{value:.3g}"


def change_text(alert: Mapping[str, Any]) -> str:
    """``before → after`` of the alert's main measure (error rate, mean, coverage), as
    text; empty when its before/after hold none of them (wall-clock alerts)."""
    before, after = alert.get("before"), alert.get("after")
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return ""
    for key, as_pct in (("error_rate", True), ("coverage", True), ("mean", False)):
        b, a = before.get(key), after.get(key)
        if isinstance(b, int | float) and isinstance(a, int | float):
            shown = _pct if as_pct else _number
            return f"{key.replace('_', ' ')} {shown(b)} \u2192 {shown(a)}"
    return ""


def _paged(entry: AlertEntry) -> str:
    """``yes``, or ``no`` and why not when the notifier recorded why (a silence, an ack,
    a rate limit, info severity...)."""
    if entry.paged:
        return "yes, escalated" if entry.escalated else "yes"
    state = entry.page_state
    return "no" if state in ("no_record", "paged") else f"no: {state.replace('_', ' ')}"


def _alert_row(entry: AlertEntry) -> str:
    a = entry.alert
    at = a.get("event_time_ms")
    when = _time(at) if isinstance(at, int) else _e(a.get("event_time", DASH))
    detected = _e(a.get("detected_at") or "")
    severity = str(a.get("severity") or "info")
    change = change_text(a)
    message = str(a.get("message") or "")
    what = "<br>\n".join(
        [f"<strong>{_e(change)}</strong>"] * bool(change)
        + [f'<span class="muted">{_e(message)}</span>'] * bool(message)
    )
    acked = _e(entry.acked_by) if entry.acked_by else DASH
    paged, paged_title = _paged(entry), PAGE_STATES.get(entry.page_state, "")
    if entry.acked_by and entry.acked_at_ms:
        acked += f' <span class="muted">{_time(entry.acked_at_ms)}</span>'
    alert_id = str(a.get("alert_id") or "")
    status = str(a.get("status") or "firing")
    if entry.incident_open and status == "firing":
        status += " (open)"
    cells = (
        f'<td class="num" title="detected {detected}">{when}</td>',
        f'<td class="kind">{_e(a.get("kind", DASH))}</td>',
        f'<td class="severity">{_badge(severity, severity)}</td>',
        f'<td class="status">{_e(status)}</td>',
        f'<td class="what">{what or DASH}</td>',
        f'<td class="acked">{acked}</td>',
        f'<td class="paged" title="{_e(paged_title)}">{_e(paged)}</td>',
        f'<td class="id"><a href="{_e(_alert_href(alert_id))}"><code>{_e(alert_id[:12])}'
        "</code></a></td>",
    )
    return f'<tr class="alert sev-{_e(severity)}">{"".join(cells)}</tr>'


def model_page(
    status: ModelStatus,
    series: Sequence[SeriesPoint],
    alerts: Sequence[AlertEntry],
    *,
    now_ms: int,
    alerts_unavailable: str | None = None,
) -> str:
    """A model's status row, its error rate and label coverage over time, and its alerts
    in the order given (newest first from :func:`~streams.views.history.alert_history`).
    ``alerts_unavailable``: why the alerts could not be read (the broker did not answer);
    the rest of the page is still worth showing."""
    m = status
    runbook = ""
    if m.runbook:
        scheme = urlsplit(m.runbook).scheme.lower()
        shown = _e(m.runbook)
        runbook = (
            f'<p>Runbook: <a href="{shown}" rel="noreferrer">{shown}</a></p>'
            if scheme in ("http", "https")
            else f"<p>Runbook: <code>{shown}</code></p>"
        )
    marks = [
        ChartMark(
            int(e.alert["event_time_ms"]),
            str(e.alert.get("severity") or "info"),
            f"{e.alert.get('kind', 'alert')} ({e.alert.get('severity', '')})",
        )
        for e in alerts
        if isinstance(e.alert.get("event_time_ms"), int)
    ]
    chart = health_chart(series, marks=marks, title=f"{m.model_id}: error rate and label coverage")
    if chart:
        first, last = min(p.t_ms for p in series), max(p.t_ms for p in series)
        graph = (
            f'<div class="chart-box" id="chart">{chart}</div>'
            f'<p class="legend"><span>{len(series)} points, one per {BUCKET_TEXT} of '
            "prediction time, "
            f"{_time(first)} to {_time(last)} UTC; recent points fill in as labels "
            "arrive</span><span>dashed lines: alerts (red critical, orange "
            "warning, grey info)</span></p>"
        )
    else:
        graph = (
            '<p class="empty" id="no-series">No history yet: no worker has counted a '
            "prediction or outcome of this model in the last week of prediction time (the "
            f"chart counts them per {BUCKET_TEXT} of prediction time).</p>"
        )
    if alerts_unavailable is not None:
        listing = (
            f'<p class="empty" id="alerts-unavailable">Alerts cannot be shown now: '
            f"{_e(alerts_unavailable)}</p>"
        )
    elif alerts:
        rows = "\n".join(_alert_row(e) for e in alerts)
        listing = f'<table id="alerts">{_head(ALERT_COLUMNS)}<tbody>\n{rows}\n</tbody></table>'
    else:
        listing = '<p class="empty" id="no-alerts">No alerts for this model.</p>'
    body = (
        '<p><a href="/">\u2190 fleet</a></p>'
        f"<h1>{_e(m.model_id)} {_badge(m.state, m.state if m.state in _STATES else 'unknown')}"
        "</h1>"
        f'<table id="status">{_head(FLEET_COLUMNS)}<tbody>{_row(m, now_ms, link=False)}'
        "</tbody></table>"
        f'<p class="summary">{m.outcomes:,} outcomes and {m.predictions:,} predictions '
        f"seen.</p>{runbook}"
        f"<h2>Error rate and label coverage over event time</h2>{graph}"
        f"<h2>Alerts{'' if alerts_unavailable is not None else f' ({len(alerts)}, newest first)'}"
        f"</h2>{listing}"
    )
    return _page(m.model_id, body, now_ms=now_ms, where=f"model {m.model_id}")


def alert_page(entry: AlertEntry, *, now_ms: int) -> str:
    """One alert: what the notifier did with it, and the event as published."""
    a = entry.alert
    model_id = str(a.get("model_id") or "")
    fields: list[tuple[str, str]] = [
        ("Alert id", f"<code>{_e(a.get('alert_id', ''))}</code>"),
        ("Model", f'<a href="{_e(model_href(model_id))}">{_e(model_id)}</a>'),
        ("Kind", _e(a.get("kind", DASH))),
        ("Severity", _badge(str(a.get("severity") or "info"), str(a.get("severity") or "info"))),
        ("Status", _e(a.get("status") or "firing")),
        ("Event time", _e(a.get("event_time") or DASH)),
        ("Detected at", _e(a.get("detected_at") or DASH)),
        ("Change", _e(change_text(a) or DASH)),
        ("Message", _e(a.get("message") or DASH)),
        ("Paged", _e(_paged(entry))),
        ("Notifier", _e(PAGE_STATES.get(entry.page_state, entry.page_state))),
        (
            "Acknowledged",
            f"by {_e(entry.acked_by)} at {_time(entry.acked_at_ms)} UTC"
            if entry.acked_by
            else "no",
        ),
        ("Incident", "open" if entry.incident_open else "closed"),
        ("Model silenced", "yes" if entry.silenced else "no"),
    ]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in fields)
    raw = orjson.dumps(a, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
    body = (
        f'<p><a href="{_e(model_href(model_id))}">\u2190 {_e(model_id)}</a></p>'
        f"<h1>{_e(a.get('kind', 'alert'))} on {_e(model_id)}</h1>"
        f'<dl class="fields" id="alert">{rows}</dl>'
        f"<h2>As published</h2><pre>{_e(raw.decode())}</pre>"
    )
    return _page(
        f"alert {a.get('alert_id', '')}",
        body,
        now_ms=now_ms,
        refresh=False,
        where=f"alert {str(a.get('alert_id', ''))[:12]}",
    )


def _report_row(m: ModelCard) -> str:
    name = _e(m.model_id)
    if m.model_id:
        name = f'<a href="{_e(model_href(m.model_id))}">{name}</a>'
    if m.orphan:
        name += " " + _badge("ORPHAN", "orphan")
    overdue = "<br>\n".join(f"{_e(o.reason)}: {_e(o.message)}" for o in m.overdue) or DASH
    ack = DASH
    if m.ack_seconds:
        ack = f"{_e(duration_text(m.ack_median_s))} ({len(m.ack_seconds)} acked)"
    watched = "<br>\n".join(_e(w) for w in watch_lines(m))
    cells = (
        ("model short" if len(m.model_id) <= SHORT_ID else "model", name),
        ("num incidents", f"{m.open_incidents} / {m.resolved_incidents}"),
        ("num ack", ack),
        ("num unacked", f"{m.unacked} of {m.pages}"),
        ("num error", f"{_pct(m.error_rate)} / {_pct(m.baseline_error_rate)}"),
        ("num coverage", _pct(m.label_coverage)),
        ("versions", _e(", ".join(m.versions)) or DASH),
        ("overdue", overdue),
        ("watched", watched),
    )
    tds = "".join(f'<td class="{cls}">{html}</td>' for cls, html in cells)
    state = "critical" if m.orphan else "warning" if m.open_incidents or m.overdue else "ok"
    return f'<tr class="state-{state}" data-model="{_e(m.model_id)}">{tds}</tr>'


def _scorecard(card: Scorecard, index: int) -> str:
    title = "nobody (no registered owner)" if card.owner == NOBODY else card.owner
    rows = "\n".join(_report_row(m) for m in card.models)
    return (
        f'<section class="scorecard" id="owner-{index}" data-owner="{_e(card.owner)}">'
        f"<h2>{_e(title)}</h2>"
        f'<p class="summary">{_e(totals_text(card))}</p>'
        f"<table>{_head(REPORT_COLUMNS)}<tbody>\n{rows}\n</tbody></table></section>"
    )


def report_page(report: Report, *, now_ms: int) -> str:
    """The maintenance scorecard (:mod:`streams.views.report`): per owner, nobody's
    first, a totals line and a row per model; also ``watchkeeper report --format html``."""
    notes = "".join(f'<p class="empty note">{_e(n)}</p>' for n in report.notes)
    if report.scorecards:
        cards = "\n".join(_scorecard(c, i) for i, c in enumerate(report.scorecards))
    else:
        cards = (
            '<p class="empty" id="no-models">No models: no worker has seen traffic and no '
            "owner is registered.</p>"
        )
    body = (
        '<p><a href="/">\u2190 fleet</a></p>'
        "<h1>Maintenance scorecard</h1>"
        f'<p class="summary" id="window">From {_time(report.since_ms)} to '
        f"{_time(report.now_ms)} UTC. Who was watching each model, nobody's first.</p>"
        f"{notes}{cards}"
    )
    return _page("Scorecard", body, now_ms=now_ms, refresh=False, where="scorecard")


def not_found_page(what: str, *, now_ms: int) -> str:
    """The 404 page: names what was asked for (escaped) and links back to the fleet."""
    body = (
        "<h1>Not found</h1>"
        f'<p class="empty" id="not-found">{_e(what)}</p><p><a href="/">Back to the fleet</a></p>'
    )
    return _page("not found", body, now_ms=now_ms, refresh=False)


def error_page(message: str, *, now_ms: int) -> str:
    """Redis or the broker did not answer: say which, and retry with the refresh."""
    body = f'<h1>Not available</h1><p class="empty" id="error">{_e(message)}</p>'
    return _page("not available", body, now_ms=now_ms)
