"""The compact join state: same behaviour as the heap-indexed join it replaced, fewer bytes.

``HeapJoiner`` below is the earlier implementation (tagged tuples, one heap entry per
write), kept as the reference: the bucketed expiry index must expire exactly the same
keys after exactly the same events, for any TTL, lateness and duplication.
"""

from __future__ import annotations

import gc
import heapq
import pickle
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract.events import GroundTruth, Outcome, Prediction, parse_predictions
from streams.engine.join import Joiner


class HeapJoiner:
    """The join before its state was compacted (behaviour only: no task lookup)."""

    def __init__(self, store: dict[str, tuple[Any, ...]], *, ttl_ms: int) -> None:
        self.store = store
        self.ttl_ms = ttl_ms
        self.watermark_ms: int | None = None
        self.expired: Counter[str] = Counter()
        self._expiry: list[tuple[int, str]] = []

    @staticmethod
    def _ts(entry: tuple[Any, ...]) -> int:
        return int(entry[3] if entry[0] == "P" else entry[-1])

    def rebuild_index(self) -> None:
        self._expiry = [(self._ts(e) + self.ttl_ms, pid) for pid, e in self.store.items()]
        heapq.heapify(self._expiry)
        marks = [self._ts(e) for e in self.store.values() if e[0] in ("P", "D")]
        self.watermark_ms = max(marks) if marks else None

    def _put(self, pid: str, entry: tuple[Any, ...]) -> None:
        self.store[pid] = entry
        heapq.heappush(self._expiry, (self._ts(entry) + self.ttl_ms, pid))

    def add_prediction(self, p: Prediction) -> tuple[Any, ...] | None:
        entry = self.store.get(p.prediction_id)
        out = None
        if entry is None:
            self._put(
                p.prediction_id, ("P", p.model_id, p.model_version, p.timestamp_ms, p.prediction)
            )
        elif entry[0] == "L":
            self._put(p.prediction_id, ("D", p.timestamp_ms))
            out = (p.prediction_id, p.model_id, p.timestamp_ms, entry[2], p.prediction, entry[1])
        self._advance(p.timestamp_ms)
        return out

    def add_label(self, g: GroundTruth) -> tuple[Any, ...] | None:
        entry = self.store.get(g.prediction_id)
        if entry is None:
            self._put(g.prediction_id, ("L", g.label, g.timestamp_ms))
        elif entry[0] == "P":
            _, model_id, _, ts, prediction = entry
            self._put(g.prediction_id, ("D", ts))
            return (g.prediction_id, model_id, ts, g.timestamp_ms, prediction, g.label)
        return None

    def _advance(self, ts_ms: int) -> None:
        if self.watermark_ms is not None and ts_ms <= self.watermark_ms:
            return
        self.watermark_ms = ts_ms
        limit = ts_ms - self.ttl_ms
        while self._expiry and self._expiry[0][0] - self.ttl_ms < limit:
            expire_at, pid = heapq.heappop(self._expiry)
            entry = self.store.get(pid)
            if entry is not None and self._ts(entry) + self.ttl_ms == expire_at:
                del self.store[pid]
                self.expired[entry[0]] += 1


def legacy_form(entry: Any) -> tuple[Any, ...]:
    """A current entry in the tagged form the reference keeps."""
    if isinstance(entry, int):
        return ("D", entry)
    if isinstance(entry, list):
        return ("P", *entry)
    return ("L", entry[1], entry[0])


def key(o: Outcome | None) -> tuple[Any, ...] | None:
    if o is None:
        return None
    return (o.prediction_id, o.model_id, o.event_time_ms, o.label_time_ms, o.prediction, o.label)


def expired_of(joiner: Joiner) -> Counter[str]:
    s = joiner.stats
    return +Counter(P=sum(s.expired_predictions.values()), L=s.expired_labels)


Event = tuple[str, int, int, str, int]  # kind, id, ts, model, value

ttls = st.sampled_from([1, 5, 255, 256, 1000, 7919, 100_000])


@st.composite
def streams_(draw: st.DrawFn) -> tuple[int, list[Event]]:
    """Events on a clock that creeps forward (so the expiry boundary often stays within one
    bucket), each early, on time or late by up to two TTLs, over a few reused ids."""
    ttl = draw(ttls)
    creep = st.integers(0, ttl // 20 + 1)
    skew = st.one_of(
        st.just(0),
        st.integers(-ttl // 10 - 1, ttl // 10 + 1),
        st.integers(ttl - ttl // 50 - 2, ttl + ttl // 50 + 2),
        st.integers(0, 2 * ttl),
    )
    clock = draw(st.integers(0, 3 * ttl))
    events: list[Event] = []
    for _ in range(draw(st.integers(0, 80))):
        clock += draw(creep)
        events.append(
            (
                draw(st.sampled_from(["p", "g"])),
                draw(st.integers(0, 12)),
                max(0, clock - draw(skew)),
                draw(st.sampled_from(["a", "b"])),
                draw(st.integers(0, 1)),
            )
        )
    return ttl, events


def apply(joiner: Any, e: Event) -> Any:
    kind, i, ts, model, value = e
    if kind == "p":
        return joiner.add_prediction(Prediction(f"p{i}", model, "1", ts, value, None, None))
    return joiner.add_label(GroundTruth(f"p{i}", value, ts))


def assert_same(new: Joiner, ref: HeapJoiner, new_out: Any, ref_out: Any) -> None:
    assert key(new_out) == ref_out
    assert {pid: legacy_form(e) for pid, e in new.store.items()} == ref.store
    assert new.watermark_ms == ref.watermark_ms


@settings(max_examples=400, deadline=None)
@given(streams_(), st.integers(0, 80))
def test_expires_exactly_what_the_heap_index_expired(stream, cut):
    """Same outcomes, same store after every event, same expiry counts; also across a
    restore from a pickled store (as from a changelog) at any point."""
    ttl, events = stream
    new, ref = Joiner({}, ttl_ms=ttl), HeapJoiner({}, ttl_ms=ttl)
    expired: Counter[str] = Counter()
    for n, e in enumerate(events):
        if n == cut:
            expired += expired_of(new)
            new = Joiner(pickle.loads(pickle.dumps(new.store)), ttl_ms=ttl)
            new.rebuild_index()
            ref.store = pickle.loads(pickle.dumps(ref.store))
            ref.rebuild_index()
        assert_same(new, ref, apply(new, e), apply(ref, e))
    expired += expired_of(new)
    assert expired == Counter({k: v for k, v in ref.expired.items() if k in "PL"})


def scripted(ttl: int, events: list[Event]) -> Joiner:
    """Feed ``events`` to both joins, comparing after each one; the new join."""
    new, ref = Joiner({}, ttl_ms=ttl), HeapJoiner({}, ttl_ms=ttl)
    for e in events:
        assert_same(new, ref, apply(new, e), apply(ref, e))
    return new


# TTL 2,560 ms: buckets of 10 ms. After a prediction at 10,000 the expiry boundary is
# 7,440, in bucket [7,440, 7,450), which is then the exact-timestamp heap.


def test_a_key_that_arrives_already_expired_goes_at_the_next_advance():
    j = scripted(2560, [("p", 0, 10_000, "a", 1), ("p", 1, 100, "a", 1)])
    assert "p1" in j.store  # no advance yet, as before
    j = scripted(2560, [("p", 0, 10_000, "a", 1), ("p", 1, 100, "a", 1), ("p", 2, 10_001, "a", 1)])
    assert "p1" not in j.store  # the boundary moved within its bucket: still expired


def test_a_key_rewritten_within_the_boundary_bucket_expires_at_its_new_time():
    events: list[Event] = [
        ("p", 0, 10_000, "a", 1),
        ("g", 1, 7_441, "a", 1),  # label waits, in the boundary bucket
        ("p", 1, 7_448, "a", 1),  # joined: kept until 7,448 + ttl
        ("p", 2, 10_003, "a", 1),  # boundary 7,443: past the label's time only
    ]
    assert "p1" in scripted(2560, events).store
    assert "p1" not in scripted(2560, [*events, ("p", 3, 10_009, "a", 1)]).store


@settings(max_examples=200, deadline=None)
@given(streams_(), st.integers(0, 80))
def test_restores_a_store_in_the_earlier_tagged_format(stream, cut):
    """A worker upgraded over a changelog written by the earlier version continues as the
    earlier version would have, and writes the entries back in the current form."""
    ttl, events = stream
    ref = HeapJoiner({}, ttl_ms=ttl)
    for e in events[:cut]:
        apply(ref, e)
    ref.store = pickle.loads(pickle.dumps(ref.store))
    ref.rebuild_index()
    new = Joiner(pickle.loads(pickle.dumps(ref.store)), ttl_ms=ttl)
    new.rebuild_index()
    assert not any(isinstance(e, tuple) and isinstance(e[0], str) for e in new.store.values())
    for e in events[cut:]:
        assert_same(new, ref, apply(new, e), apply(ref, e))


def messages(n: int, models: int) -> list[bytes]:
    """Predictions as JSON-array message values, as the producer helper sends them."""
    return [
        orjson.dumps(
            [
                {
                    "prediction_id": f"model-{i % models:05d}-{i // models:07d}",
                    "model_id": f"model-{i % models:05d}",
                    "model_version": "1.0.0",
                    "timestamp": 1_790_000_000_000 + 3 * i,
                    "prediction": i % 2,
                    "score": 0.5,
                }
                for i in range(start, min(start + 500, n))
            ]
        )
        for start in range(0, n, 500)
    ]


def fed(raws: list[bytes]) -> Joiner:
    joiner = Joiner({}, ttl_ms=7 * 86_400_000)
    for raw in raws:
        for p in parse_predictions(raw, record_timestamp_ms=0)[0]:
            joiner.add_prediction(p)
    return joiner


def traced(build: Callable[[], Joiner]) -> tuple[int, Joiner]:
    """Bytes still allocated by ``build`` once it returned, and what it built."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        joiner = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, joiner
    finally:
        tracemalloc.stop()


N, MODELS = 20_000, 200
# id str 72 + dict slot 20-40 + entry list 88 + timestamp 32 + index slot 8 (was ~314)
BUDGET = 250


def test_a_pending_prediction_takes_well_under_300_bytes():
    raws = messages(N, MODELS)
    held, joiner = traced(lambda: fed(raws))
    assert len(joiner) == N
    assert held / N < BUDGET


def test_restored_predictions_share_model_strings_again():
    """Unpickled entries each carry their own model_id and version strings (~120 bytes)
    until rebuild_index swaps in the shared ones."""
    records = [(k.encode(), pickle.dumps(v)) for k, v in fed(messages(N, MODELS)).store.items()]

    def restore() -> Joiner:
        joiner = Joiner({k.decode(): pickle.loads(v) for k, v in records}, ttl_ms=7 * 86_400_000)
        joiner.rebuild_index()
        return joiner

    held, joiner = traced(restore)
    entry = joiner.store["model-00007-0000003"]
    assert isinstance(entry, list)
    assert entry[0] is sys.intern("model-00007") and entry[1] is sys.intern("1.0.0")
    assert held / N < BUDGET
