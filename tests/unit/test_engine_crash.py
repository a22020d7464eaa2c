"""A join batch that is processed again after a crash changes no detection.

The crash is simulated as the live worker would suffer it: a join step's batch output
(all of it, or only its outcomes, as when the worker dies half-way through publishing)
reaches the topics, but its state is rolled back to the checkpoint before the batch; the
restarted step reads the same input again, cut into different batches, and publishes the
same outcomes again. The detect steps must drop exactly those, and find what a run
without the crash finds.
"""

from __future__ import annotations

import copy

import engine_scenarios as es
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.engine.join_step import InputRecord, JoinOutput
from streams.engine.local import LocalTopology

LOST = {
    "state": lambda out: out,
    "state and join mark": lambda out: JoinOutput(outcomes=out.outcomes, forwards=out.forwards),
    "all but the outcomes": lambda out: JoinOutput(outcomes=out.outcomes),
}


def cut(records: list[InputRecord], sizes: list[int]) -> list[list[InputRecord]]:
    """``records`` in consecutive batches of the given sizes (the last takes the rest)."""
    batches = []
    for size in sizes:
        if records:
            batches.append(records[:size])
            records = records[size:]
    return [*batches, records] if records else batches


def crash_run(
    scenario: es.Scenario, *, crashed: int, at: int, lost: str, rerun: list[int]
) -> tuple[LocalTopology, int]:
    """Feed every partition ``at`` records per topic, then give join ``crashed`` a big batch
    that crashes, then the rest; returns the topology and how many outcomes the crashed
    batch published."""
    topo = es.topology(scenario.partitions)
    logs = {key: list(log) for key, log in scenario.logs.items()}
    topo.feed([rec for log in logs.values() for rec in log[:at]])
    batch = [rec for (_, q), log in logs.items() if q == crashed for rec in log[at : at + 40]]
    for (_, q), log in logs.items():
        del log[: at + 40 if q == crashed else at]

    step = topo.joins[crashed]
    saved = copy.deepcopy((step.joiner.store, step.meta))
    published = LOST[lost](step.process(batch))
    topo.publish(crashed, published)
    topo.settle()
    emitted = sum(len(j.outcomes) for groups in published.outcomes.values() for j in groups)
    store, meta = copy.deepcopy(saved)  # the restart: state from the last checkpoint
    step.joiner.store.clear()
    step.joiner.store.update(store)
    step.meta.clear()
    step.meta.update(meta)
    step.restore()
    predictions = [r for r in batch if r.kind == "p"]
    labels = [r for r in batch if r.kind == "g"]
    for part in cut(predictions, rerun) + cut(labels, rerun[::-1]):
        topo.feed(part)
    topo.feed([rec for log in logs.values() for rec in log])
    topo.finish()
    return topo, emitted


def signals(topo: LocalTopology) -> list[tuple[str, str, str, int, int]]:
    """The label-free signals found, as their alerts identify them."""
    return [
        (f.model_id, f.signal.kind, f.signal.status, f.signal.index, f.signal.event_time_ms)
        for f in topo.found_signals()
    ]


@pytest.mark.parametrize("lost", list(LOST))
@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    partitions=st.integers(2, 4),
    crashed=st.integers(0, 3),
    at=st.integers(0, 30),
    rerun=st.lists(st.integers(1, 8), min_size=1, max_size=12),
)
def test_outcomes_published_again_after_a_crash_are_dropped(
    lost: str, seed: int, partitions: int, crashed: int, at: int, rerun: list[int]
) -> None:
    scenario = es.build(seed, partitions=partitions)
    clean = es.reference(scenario)
    topo, emitted = crash_run(scenario, crashed=crashed % partitions, at=at, lost=lost, rerun=rerun)
    assert es.found(topo) == es.found(clean)
    assert signals(topo) == signals(clean)
    assert es.outcome_counts(topo) == es.outcome_counts(clean)
    assert topo.detect_counts["duplicate_outcomes"] == emitted
    assert topo.late_outcomes == 0


def test_a_crash_that_published_outcomes_is_seen_and_survived() -> None:
    """Not vacuous: this crash published outcomes, and the run still raises alerts."""
    scenario = es.build(1, partitions=3)
    topo, emitted = crash_run(
        scenario, crashed=1, at=10, lost="all but the outcomes", rerun=[1, 2, 3]
    )
    assert emitted > 5
    assert topo.detect_counts["duplicate_outcomes"] == emitted
    assert es.found(topo) == es.found(es.reference(scenario)) != []
