"""The versions bench: its streams are what they claim, and on its quick run a +10-point
regression is found at every canary share and on a switch, with no false alarm on equal
versions or stable streams."""

from __future__ import annotations

import pytest

from bench.quality_versions import build, drive, run


def test_the_streams_serve_the_share_and_the_error_rates_they_claim() -> None:
    arrivals, switch = build(1, 0.2, 0.3, before=2000, served=1000)
    predictions = [e for _, _, e in arrivals if e[0] == "p"]
    outcomes = [e for _, _, e in arrivals if e[0] == "o"]
    assert len(predictions) == len(outcomes) == 2000 + 5000
    assert switch is not None and all(e[3][2] == "v1" for e in predictions[:2000])
    late = predictions[2000:]
    assert sum(e[3][2] == "v2" for e in late) / len(late) == pytest.approx(0.2, abs=0.03)
    v2 = [e[3] for e in outcomes if e[4][0] == "v2"]
    assert sum(v2) / len(v2) == pytest.approx(0.3, abs=0.05)
    assert [a[0] for a in arrivals] == sorted(a[0] for a in arrivals)  # arrival order


def test_a_stream_without_a_change_raises_no_lifecycle_alert() -> None:
    arrivals, switch = build(2, 0.0, 0.1, before=3000, after=0)
    r = drive(arrivals, switch)
    assert switch is None and r.regressions == [] and r.changed == 0 and r.outcomes == 3000


def test_the_quick_run_meets_its_targets() -> None:
    suite = run(quick=True)
    missed = [r.metric for r in suite.rows if r.met is False]
    assert missed == []
    detected = [r for r in suite.rows if r.metric.startswith("version_regression detected")]
    assert len(detected) == 3 and all(r.met for r in detected)
