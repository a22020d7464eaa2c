"""The engine's detections are a property of the events: however partition reads and the
re-key and outcomes hops interleave (keeping Kafka's order within a partition), the same
records give the same alerts, the same outcome counts and no late outcomes."""

from __future__ import annotations

import engine_scenarios as es
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.join_step import InputRecord
from streams.engine.local import LocalTopology, Scheduler


def run_interleaved(scenario: es.Scenario, choose: Scheduler) -> LocalTopology:
    """Each read takes a prefix of the unread records of some partitions (a getmany);
    hops are held and delivered when, and in the batches, ``choose`` says."""
    topo = es.topology(scenario.partitions, scheduler=choose)
    unread = {key: list(log) for key, log in scenario.logs.items() if log}
    while unread:
        keys = list(unread)
        read: list[InputRecord] = []
        for _ in range(1 + choose(min(3, len(keys)))):
            key = keys.pop(choose(len(keys)))
            log = unread[key]
            take = 1 + choose(min(8, len(log)))
            read += log[:take]
            del log[:take]
            if not log:
                del unread[key]
            if not keys:
                break
        topo.feed(read)
    topo.finish()
    return topo


def test_the_scenarios_raise_alerts_before_the_end_of_the_stream() -> None:
    """Not vacuous: the reference finds alerts, and watermarks release outcomes while the
    stream runs (so the interleavings below reorder real releases, not one final flush)."""
    for seed in range(3):
        scenario = es.build(seed, partitions=3)
        ref = es.reference(scenario)
        assert es.found(ref), seed
        assert ref.late_outcomes == 0
        topo = es.topology(3)
        logs = [list(log) for log in scenario.logs.values()]
        released = []  # outcomes through the detectors after each fetch
        while any(logs):
            topo.feed([rec for log in logs for rec in log[:5]])  # a fetch of every partition
            logs = [log[5:] for log in logs]
            released.append(sum(t.monitor.n for s in topo.detects[0] for t in s.tracks.values()))
        assert 0 < released[len(released) // 2] < released[-1], released
        assert topo.found[0], "no alert before the end of the stream"
        topo.finish()
        assert es.found(topo) == es.found(ref)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(st.data())
def test_any_interleaving_of_reads_and_hops_gives_the_reference_detections(
    data: st.DataObject,
) -> None:
    seed = data.draw(st.integers(0, 2**20), label="seed")
    partitions = data.draw(st.integers(2, 4), label="partitions")
    scenario = es.build(seed, partitions=partitions, predictions=100)
    ref = es.reference(scenario)

    def choose(n: int) -> int:
        return data.draw(st.integers(0, n - 1)) if n > 1 else 0

    topo = run_interleaved(scenario, choose)
    assert es.found(topo) == es.found(ref)
    assert es.outcome_counts(topo) == es.outcome_counts(ref)
    assert topo.late_outcomes == ref.late_outcomes == 0
    assert topo.dead_letters == ref.dead_letters
    assert topo.detect_counts["duplicate_outcomes"] == 0
