"""The detect step's per-bucket history counts each prediction and outcome exactly once.

The join's batches are cut at random; a batch may crash after publishing its outcomes
(its mark published or lost) and be processed again from the same input, cut anew, as
the live join does after a restart. Two join partitions interleave on the outcomes
partition. Whatever the cuts and re-emissions, the step's ``series`` summed over its
outputs equals an independent count of the distinct events by bucket of prediction time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.config import DetectorSettings
from streams.contract.events import Outcome
from streams.contract.internal import JoinedOutcomes, JoinMark, Seen
from streams.engine.detect_step import DetectStep, OutcomesRecord
from streams.engine.series import SERIES_BUCKET_MS

TOPIC = "wk-outcomes"
START = 1_795_000_000_000
MODELS = ("m1", "m2", "m3")


@dataclass(frozen=True)
class Event:
    """One input of a join partition: an outcome, or a prediction event seen."""

    key: str
    model: str
    t_ms: int
    outcome: bool
    error: float = 0.0
    valid: bool = True


def events(join: int) -> st.SearchStrategy[list[Event]]:
    event = st.tuples(
        st.sampled_from(MODELS),
        st.integers(0, 10 * SERIES_BUCKET_MS),
        st.booleans(),
        st.floats(0, 5, allow_nan=False),
        st.booleans() | st.just(True),
    )
    return st.lists(event, max_size=60).map(
        lambda raw: [
            Event(f"j{join}-{i}", m, START + t, outcome, error, valid or outcome)
            for i, (m, t, outcome, error, valid) in enumerate(raw)
        ]
    )


def messages(join: int, batch: list[Event], end: int, cuts: list[int]) -> list[JoinedOutcomes]:
    """A join batch's output: per model, its outcomes and seen predictions, split into
    pieces at ``cuts`` (re-processing may split them differently)."""
    offsets = {f"input-{join}": end}
    by_model: dict[str, list[Event]] = defaultdict(list)
    for e in batch:
        by_model[e.model].append(e)
    out = []
    for k, (model, mine) in enumerate(sorted(by_model.items())):
        cut = cuts[k % len(cuts)] % (len(mine) + 1) if cuts else len(mine)
        for part in (mine[:cut], mine[cut:]):
            outcomes = [
                Outcome(e.key, model, "v1", e.t_ms, e.t_ms + 1, 1, 1, e.error)
                for e in part
                if e.outcome
            ]
            seen = [Seen(e.key, model, e.t_ms, 1, None, "v1", e.valid) for e in part]
            if outcomes or seen:
                out.append(JoinedOutcomes(join, outcomes, dict(offsets), seen))
    return out


def join_log(join: int, inputs: list[Event], draw: st.DrawFn) -> list[JoinedOutcomes | JoinMark]:
    """What join partition ``join`` publishes for ``inputs``: batches cut at random, some
    crashing after their outcomes (mark published or not) and processed again."""
    log: list[JoinedOutcomes | JoinMark] = []
    pos = seq = 0
    while pos < len(inputs):
        end = draw(st.integers(pos + 1, len(inputs)))
        cuts = draw(st.lists(st.integers(0, 60), max_size=3))
        log += messages(join, inputs[pos:end], end - 1, cuts)
        mark = JoinMark(join, seq, None, {f"input-{join}": end - 1})
        if draw(st.booleans()):  # a crash before the checkpoint: the batch again
            if draw(st.booleans()):
                log.append(mark)
            continue  # same seq, same start, cut anew
        log.append(mark)
        pos, seq = end, seq + 1
    return log


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[Event], list[list[OutcomesRecord]]]:
    """Two join partitions' inputs, and the outcomes partition's records in fetches."""
    inputs = [draw(events(j)) for j in (0, 1)]
    logs = [join_log(j, inputs[j], draw) for j in (0, 1)]
    merged: list[JoinedOutcomes | JoinMark] = []
    while any(logs):
        j = draw(st.sampled_from([j for j, log in enumerate(logs) if log]))
        merged.append(logs[j].pop(0))
    records = [OutcomesRecord(TOPIC, offset, body) for offset, body in enumerate(merged)]
    batches, pos = [], 0
    while pos < len(records):
        end = draw(st.integers(pos + 1, len(records)))
        batches.append(records[pos:end])
        pos = end
    return inputs[0] + inputs[1], batches


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_bucket_totals_count_each_distinct_prediction_and_outcome_once(
    case: tuple[list[Event], list[list[OutcomesRecord]]],
) -> None:
    inputs, batches = case
    step = DetectStep(0, 2, tracks={}, meta={}, detectors=DetectorSettings(), lag_ms=0)
    got: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for batch in batches:
        for model, buckets in step.process(batch).series.items():
            for start, (p, o, e) in buckets.items():
                assert start % SERIES_BUCKET_MS == 0
                total = got[(model, start)]
                total[0] += p
                total[1] += o
                total[2] += e

    expected: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for e in inputs:
        total = expected[(e.model, e.t_ms - e.t_ms % SERIES_BUCKET_MS)]
        total[0] += e.valid
        total[1] += e.outcome
        total[2] += e.error if e.outcome else 0.0
    expected = {k: v for k, v in expected.items() if v[0] or v[1]}
    got = {k: v for k, v in got.items() if v[0] or v[1]}
    assert got.keys() == expected.keys()
    for key, (p, o, e) in expected.items():
        assert got[key][:2] == [p, o], key
        assert math.isclose(got[key][2], e, rel_tol=1e-9, abs_tol=1e-9), key
