"""The scorecard as text: Markdown for ``watchkeeper report`` (and pasting into a wiki or
a ticket), and the one-line summaries the weekly digest pages carry (a page is read on a
phone: counts and the command that prints the rest).

Ids and names come from producers and operators: in Markdown, table cells have ``|``,
backslashes, backticks and line breaks escaped, so a hostile id cannot add a column, a
row or markup."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

from streams.views.report import NOBODY, ModelCard, Report, Scorecard

__all__ = [
    "REPORT_COLUMNS",
    "digest_text",
    "duration_text",
    "fleet_digest_text",
    "md_cell",
    "to_markdown",
    "watch_lines",
    "watched_text",
]

DASH = "-"
_MD_SPECIAL = str.maketrans(
    {
        "|": "\\|",
        "\\": "\\\\",
        "`": "\\`",
        "*": "\\*",
        "_": "\\_",
        "<": "&lt;",
        ">": "&gt;",
        "[": "\\[",
        "]": "\\]",
    }
)


def md_cell(value: object) -> str:
    """A value safe in one Markdown table cell: one line, no markup."""
    text = " ".join(str(value).split())
    return text.translate(_MD_SPECIAL) or DASH


def duration_text(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h12m``, ``2d4h``: the two largest units."""
    if seconds is None:
        return DASH
    rest = int(round(seconds))
    if rest < 60:
        return f"{rest}s"
    units = ((86_400, "d"), (3_600, "h"), (60, "m"), (1, "s"))
    for i, (size, name) in enumerate(units):
        if rest >= size:
            big, small = divmod(rest, size)
            nxt_size, nxt_name = units[i + 1]
            tail = small // nxt_size
            return f"{big}{name}" + (f"{tail}{nxt_name}" if tail else "")
    return f"{rest}s"  # pragma: no cover - the loop returns for any rest >= 60


def day_text(ms: int | None) -> str:
    if ms is None:
        return DASH
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}Z"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f}%"


def owner_label(card: Scorecard) -> str:
    return "nobody (no registered owner)" if card.owner == NOBODY else card.owner


def watched_text(m: ModelCard) -> str:
    """``team-fraud (owner since 2026-11-02 09:00Z); alice acked 2026-11-30 14:05Z``."""
    return "; ".join(watch_lines(m))


def watch_lines(m: ModelCard) -> list[str]:
    """Each watcher of the model with their date; ``nobody`` for none."""
    if not m.watched_by:
        return ["nobody"]
    parts = []
    for w in m.watched_by:
        if w.role == "owner":
            since = f" since {day_text(w.at_ms)}" if w.at_ms is not None else ""
            parts.append(f"{w.name} (owner{since})")
        elif w.role == "confirmed":
            parts.append(f"{w.name} confirmed {day_text(w.at_ms)}")
        else:
            parts.append(f"{w.name} acked {day_text(w.at_ms)}")
    return parts


REPORT_COLUMNS = (
    "Model",
    "Incidents open / resolved",
    "Time to ack (median)",
    "Unacked pages",
    "Error now / baseline",
    "Label coverage",
    "Versions shipped",
    "Overdue",
    "Watched by",
)


def _row(m: ModelCard) -> list[str]:
    name = m.model_id + (" (ORPHAN)" if m.orphan else "")
    overdue = "; ".join(f"{o.reason}: {o.message}" for o in m.overdue) or DASH
    return [
        name,
        f"{m.open_incidents} / {m.resolved_incidents}",
        f"{duration_text(m.ack_median_s)} ({len(m.ack_seconds)} acked)",
        f"{m.unacked} of {m.pages}",
        f"{pct(m.error_rate)} / {pct(m.baseline_error_rate)}",
        pct(m.label_coverage),
        ", ".join(m.versions) or DASH,
        overdue,
        watched_text(m),
    ]


def to_markdown(report: Report) -> str:
    """The whole report as Markdown: a header line, then per owner a totals line and a
    table of its models (nobody's first)."""
    lines = [
        "# Watchkeeper maintenance scorecard",
        "",
        f"From {day_text(report.since_ms)} to {day_text(report.now_ms)} (UTC).",
        "",
    ]
    lines += [f"> note: {md_cell(n)}" for n in report.notes]
    if report.notes:
        lines.append("")
    if not report.scorecards:
        lines.append("No models: no worker has seen traffic and no owner is registered.")
        return "\n".join(lines) + "\n"
    for card in report.scorecards:
        lines += [f"## {md_cell(owner_label(card))}", "", totals_text(card), ""]
        lines.append("| " + " | ".join(REPORT_COLUMNS) + " |")
        lines.append("|" + "---|" * len(REPORT_COLUMNS))
        for m in card.models:
            lines.append("| " + " | ".join(md_cell(c) for c in _row(m)) + " |")
        lines.append("")
    return "\n".join(lines)


def totals_text(card: Scorecard) -> str:
    """One line of an owner's totals (the digest page's core)."""
    t = card.totals()
    parts = [f"{t.models} model{'s' if t.models != 1 else ''}"]
    if t.orphans:
        parts.append(f"{t.orphans} orphan{'s' if t.orphans != 1 else ''} (nobody watching)")
    if not t.pages:
        paging = "no pages"
    elif t.ack_median_s is None:
        paging = f"{t.pages} page{'s' if t.pages != 1 else ''}, none acknowledged"
    else:
        paging = (
            f"{t.pages} page{'s' if t.pages != 1 else ''}, {t.unacked} unacknowledged, "
            f"median time to acknowledge {duration_text(t.ack_median_s)}"
        )
    parts += [
        f"incidents {t.open_incidents} open, {t.resolved_incidents} resolved",
        paging,
        f"{t.versions_shipped} version{'s' if t.versions_shipped != 1 else ''} shipped",
        f"{t.overdue} overdue item{'s' if t.overdue != 1 else ''}",
        f"lowest label coverage {pct(t.min_label_coverage)}",
    ]
    return "; ".join(parts) + "."


def _command(owner: str | None, days: str) -> str:
    flag = f" --owner {shlex.quote(owner)}" if owner is not None else ""
    return f"watchkeeper report --since {days}{flag}"


def digest_text(card: Scorecard, report: Report, *, since: str) -> str:
    """An owner's weekly digest page: their totals, their models needing attention and
    the command for the whole scorecard. One paragraph (email collapses lines)."""
    names = [m.model_id for m in card.models if m.open_incidents or m.overdue or m.unacked]
    attention = f" Needing attention: {', '.join(names[:10])}." if names else ""
    if len(names) > 10:
        attention = attention[:-1] + f" and {len(names) - 10} more."
    return (
        f"Watchkeeper scorecard for {owner_label(card)}, {day_text(report.since_ms)} to "
        f"{day_text(report.now_ms)}: {totals_text(card)}{attention} "
        f"Full scorecard: {_command(card.owner, since)}"
    )


def fleet_digest_text(report: Report, *, since: str) -> str:
    """The fallback channel's weekly digest: orphans first, then each owner's totals."""
    parts = []
    for card in report.scorecards:
        if card.owner == NOBODY:
            orphans = [m.model_id for m in card.models if m.orphan]
            shown = ", ".join(orphans[:10]) + (
                f" and {len(orphans) - 10} more" if len(orphans) > 10 else ""
            )
            parts.append(
                f"NOBODY is watching {len(card.models)} model(s)"
                + (f", orphans: {shown}" if orphans else "")
                + f" ({totals_text(card)})"
            )
        else:
            parts.append(f"{card.owner}: {totals_text(card)}")
    body = " | ".join(parts) if parts else "no models"
    return (
        f"Watchkeeper scorecard, every owner, {day_text(report.since_ms)} to "
        f"{day_text(report.now_ms)}: {body} Full report: {_command(None, since)}"
    )
