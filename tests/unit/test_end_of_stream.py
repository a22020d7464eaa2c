"""When a live worker may take a quiet stream for ended (streams.worker.end_of_stream), and
what the detect step tells it: each join partition's input offsets at its latest mark,
and the newest event held."""

from __future__ import annotations

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from detectors.config import DetectorSettings
from streams.contract.internal import JoinedOutcomes, JoinMark, Seen
from streams.engine.detect_step import DetectStep, OutcomesRecord
from streams.worker.end_of_stream import caught_up, old_enough, positions

T0 = 1_700_000_000_000
TOPICS = ("predictions", "ground_truth", "rekey-p", "rekey-g")


def step(joins: int = 2) -> DetectStep:
    return DetectStep(0, joins, tracks={}, meta={}, detectors=DetectorSettings(), lag_ms=60_000)


def mark(join: int, seq: int, offsets: dict[str, int]) -> JoinMark:
    return JoinMark(join, seq, T0 + seq, offsets, T0 + seq)


def test_the_join_offsets_are_those_of_each_join_partitions_latest_mark() -> None:
    s = step()
    s.process([OutcomesRecord("o", 0, mark(0, 1, {"predictions": 9}))])
    assert s.join_offsets() is None, "join partition 1 sent no mark yet"
    s.process(
        [
            OutcomesRecord("o", 1, mark(1, 1, {"predictions": 4, "rekey-p": 2})),
            OutcomesRecord("o", 2, mark(0, 2, {"predictions": 12, "ground_truth": 3})),
        ]
    )
    assert s.join_offsets() == {
        0: {"predictions": 12, "ground_truth": 3},
        1: {"predictions": 4, "rekey-p": 2},
    }


def test_the_newest_held_is_the_newest_event_of_a_model_still_holding_something() -> None:
    s = step(joins=1)
    assert s.newest_held_ms() is None
    seen = [Seen(f"p{i}", "m", T0 + i * 1000, 1, 0.9, "1") for i in range(5)]
    s.process(
        [
            OutcomesRecord("o", 0, JoinedOutcomes(0, [], {"predictions": 4}, seen)),
            OutcomesRecord("o", 1, mark(0, 1, {"predictions": 4})),
        ]
    )
    assert s.newest_held_ms() == T0 + 4000  # held: the watermark is behind by the lag
    s.flush()
    assert s.newest_held_ms() is None


def _tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def test_a_join_partition_behind_its_inputs_is_not_the_end_of_the_stream() -> None:
    """A worker whose own partitions are done, while another worker's join partition 1
    has not read its inputs to the end (say, it is restoring after a restart)."""
    own = {_tp("predictions", 0): 99, _tp("outcomes", 0): 50}
    marks = {0: {"predictions": 99}, 1: {"predictions": 40, "rekey-p": 7}}
    done = positions(own, [marks], TOPICS)
    assert done is not None
    ends = {tp: 0 for tp in done} | {
        _tp("predictions", 0): 100,
        _tp("outcomes", 0): 51,
        _tp("predictions", 1): 100,
        _tp("rekey-p", 1): 8,
    }
    assert not caught_up(done, ends)
    assert caught_up(done, ends | {_tp("predictions", 1): 41})


def test_no_mark_from_a_join_partition_is_not_the_end() -> None:
    assert positions({_tp("predictions", 0): 5}, [None], TOPICS) is None
    assert not caught_up({}, {})


@given(
    st.dictionaries(st.sampled_from(TOPICS), st.integers(-1, 50)),
    st.dictionaries(st.sampled_from(TOPICS), st.integers(-1, 50)),
)
def test_the_oldest_view_of_a_partition_wins(a: dict[str, int], b: dict[str, int]) -> None:
    """Two quiet detect steps may have read join partition 0's marks to different points;
    the end needs both."""
    done = positions({}, [{0: a}, {0: b}], TOPICS)
    assert done is not None
    for topic in TOPICS:
        assert done[_tp(topic, 0)] == min(a.get(topic, -1), b.get(topic, -1))


def test_what_is_newer_than_the_lag_by_the_wall_clock_is_not_released() -> None:
    now = T0 + 10 * 60_000
    assert old_enough(None, now, 300_000)
    assert old_enough(now - 300_000, now, 300_000)  # a replayed or backfilled stream
    assert not old_enough(now - 299_999, now, 300_000)  # a live stream in a lull
