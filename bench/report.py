"""What every benchmark suite returns, and how the runner turns it into JSON and Markdown.

A suite is a module in ``bench/`` with ``run(quick: bool) -> Suite``. Each :class:`Row` is
one figure measured side by side with its baseline in the same run, so the ratio holds on
a noisy shared machine; absolute figures are reported but only the ratios are targets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Row", "Suite", "markdown"]


@dataclass
class Row:
    """One measured figure; ``ratio`` and ``target`` describe it against its baseline."""

    metric: str
    value: float
    unit: str
    baseline: str = ""  # what it was measured against, in words
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""  # e.g. ">= 0.3 of aiokafka", "< 300 B"
    met: bool | None = None  # None: no target

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Suite:
    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping
    notes: list[str] = field(default_factory=list)  # one-line caveats shown under the table

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": [r.as_dict() for r in self.rows],
            "details": self.details,
            "notes": self.notes,
        }


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def markdown(suites: list[dict[str, Any]]) -> str:
    """One table per suite: figure, baseline, ratio, target, met."""
    out: list[str] = []
    for suite in suites:
        out.append(f"**{suite['name']}**\n")
        out.append("| figure | value | baseline | ratio | target | met |")
        out.append("|---|---:|---|---:|---|:---:|")
        for r in suite["rows"]:
            base = r["baseline"]
            if r["baseline_value"] is not None:
                base = f"{base}: {_num(r['baseline_value'])}"
            met = {True: "yes", False: "**no**", None: ""}[r["met"]]
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
            out.append(
                f"| {r['metric']} | {_num(r['value'])} {r['unit']} | {base} | {ratio} "
                f"| {r['target']} | {met} |"
            )
        for note in suite.get("notes", []):
            out.append(f"\n_{note}_")
        out.append("")
    return "\n".join(out)
