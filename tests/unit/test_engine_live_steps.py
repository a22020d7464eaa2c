"""The live steps and replay give the same alerts, without a broker.

Here the engine's steps are driven the way the live worker drives them: every internal
message is encoded with :mod:`streams.contract.internal` onto an in-memory topic and
decoded when read back, the re-key and outcomes topics are read late and in pieces, a
join batch mixes input and re-key records, and the detect steps flush when the stream
goes idle. Replay (:class:`~streams.replay.backtest.Backtest`) reads the same records.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

import engine_scenarios as es
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract.internal import (
    decode_forwarded,
    decode_outcomes_message,
    encode_forwarded,
    encode_join_mark,
    encode_joined_outcomes,
)
from streams.engine.detect_step import DetectStep, OutcomesRecord
from streams.engine.join_step import ForwardedRecord, InputRecord, JoinOutput, JoinStep
from streams.engine.rules import InputRules
from streams.replay.backtest import Backtest, Combination

REKEY = {"p": "wk-rekey-predictions", "g": "wk-rekey-ground-truth"}
OUTCOMES = "wk-outcomes"
RULES = InputRules(lag_ms=es.LAG_MS, min_timestamp_ms=0)  # the scenarios start in 1970


class LiveRun:
    """Join and detect steps as separate workers over in-memory topics of encoded bytes."""

    def __init__(self, scenario: es.Scenario, rng: random.Random) -> None:
        n = self.partitions = scenario.partitions
        self.rng = rng
        self.topics: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = defaultdict(list)
        self.inputs = {(es.TOPICS[kind], q): log for (kind, q), log in scenario.logs.items()}
        self.position: Counter[tuple[str, int]] = Counter()
        self.joins = [
            JoinStep(q, n, store={}, meta={}, ttl_ms=es.TTL_MS, rules=RULES, task_for=_no_task)
            for q in range(n)
        ]
        self.detects = [
            DetectStep(d, n, tracks={}, meta={}, detectors=es.SENSITIVE, lag_ms=RULES.lag_ms)
            for d in range(n)
        ]
        self.alerts: list[dict[str, Any]] = []
        self.dead_letters: Counter[str] = Counter()

    def unread(self, topic: str, partition: int) -> int:
        log = self.inputs.get((topic, partition), self.topics[(topic, partition)])
        return len(log) - self.position[(topic, partition)]

    def take(self, topic: str, partition: int) -> list[Any]:
        """A fetch: some of what is unread (nothing, at times), in offset order."""
        start = self.position[(topic, partition)]
        count = self.rng.randint(0, min(6, self.unread(topic, partition)))
        self.position[(topic, partition)] += count
        if (topic, partition) in self.inputs:
            return self.inputs[(topic, partition)][start : start + count]
        log = self.topics[(topic, partition)]
        return [(start + i, *log[start + i]) for i in range(count)]

    def join_turn(self, q: int) -> None:
        """One batch of join partition ``q``: what it fetched of its four topics, the
        topics in any order, each in offset order; then its output, as the worker sends it."""
        parts: list[list[InputRecord | ForwardedRecord]] = []
        for topic in ("predictions", "ground-truth"):
            parts.append(self.take(topic, q))
        for kind, topic in REKEY.items():
            parts.append(
                [
                    ForwardedRecord(topic, offset, decode_forwarded(kind, value))  # type: ignore[arg-type]
                    for offset, _, value in self.take(topic, q)
                ]
            )
        self.rng.shuffle(parts)
        batch = [rec for part in parts for rec in part]
        if batch:
            self.send(self.joins[q].process(batch))

    def send(self, out: JoinOutput) -> None:
        for partition, groups in out.outcomes.items():
            for joined in groups:
                key = joined.model_id.encode()
                for value in encode_joined_outcomes(joined):
                    self.topics[(OUTCOMES, partition)].append((key, value))
        for home, forwards in out.forwards.items():
            for f in forwards:
                for value in encode_forwarded(f):
                    self.topics[(REKEY[f.kind], home)].append((None, value))
        self.dead_letters.update(d.reason for d in out.dead_letters)
        assert out.mark is not None
        mark = encode_join_mark(out.mark)
        for target in range(self.partitions):
            self.topics[(OUTCOMES, target)].append((None, mark))

    def detect_turn(self, d: int) -> None:
        fetched = self.take(OUTCOMES, d)
        if fetched:
            records = [
                OutcomesRecord(OUTCOMES, off, decode_outcomes_message(value))
                for off, _, value in fetched
            ]
            self.alerts += self.detects[d].process(records).alerts(es.DETECTED_AT)

    def run(self) -> list[dict[str, Any]]:
        n = self.partitions
        topics = ["predictions", "ground-truth", *REKEY.values(), OUTCOMES]
        while any(self.unread(t, q) for t in topics for q in range(n)):
            if self.rng.random() < 0.5:
                self.join_turn(self.rng.randrange(n))
            else:
                self.detect_turn(self.rng.randrange(n))
        for step in self.detects:  # the stream went idle
            self.alerts += step.flush().alerts(es.DETECTED_AT)
        return self.alerts


def _no_task(_model_id: str) -> None:
    return None


def replayed(scenario: es.Scenario) -> list[dict[str, Any]]:
    backtest = Backtest(
        [Combination("sensitive", {}, es.SENSITIVE)],
        partitions=scenario.partitions,
        ttl_ms=es.TTL_MS,
        rules=RULES,
        detected_at=es.DETECTED_AT,
    )
    backtest.feed(scenario.records())
    result = backtest.finish()
    assert result.late_outcomes == 0
    return result.alerts["sensitive"]


def by_id(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {a["alert_id"]: a for a in alerts}
    assert len(found) == len(alerts), "an alert was raised twice"
    return found


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.large_base_example])
@given(seed=st.integers(0, 2**20), partitions=st.integers(2, 4), schedule=st.randoms())
def test_live_steps_over_encoded_topics_raise_the_replayed_alerts(
    seed: int, partitions: int, schedule: random.Random
) -> None:
    scenario = es.build(seed, partitions=partitions, base_ms=5_000_000)
    expected = replayed(scenario)
    assert expected, "the scenario must raise alerts for the comparison to mean anything"
    live = LiveRun(scenario, schedule)
    assert by_id(live.run()) == by_id(expected)
    assert live.dead_letters == Counter(invalid_json=1)
