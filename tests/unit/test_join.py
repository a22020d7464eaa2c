"""The join state machine: order-independence, idempotency, exact TTL, accounting."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contract.events import GroundTruth, Prediction
from streams.engine.join import Joiner

DAY = 86_400_000
TTL = 7 * DAY


def pred(pid: str, ts: int, model: str = "m", prediction: object = 1) -> Prediction:
    return Prediction(pid, model, "1.0", ts, prediction, None, None)  # type: ignore[arg-type]


def label(pid: str, ts: int, value: object = 1) -> GroundTruth:
    return GroundTruth(pid, value, ts)  # type: ignore[arg-type]


def feed(joiner: Joiner, events: list[Prediction | GroundTruth]) -> list:
    out = []
    for e in events:
        o = joiner.add_prediction(e) if isinstance(e, Prediction) else joiner.add_label(e)
        if o is not None:
            out.append(o)
    return out


# A universe of prediction ids, each with an optional prediction, an optional label,
# and how often each is repeated; timestamps within one day so nothing expires.
pair = st.tuples(
    st.booleans(),  # has prediction
    st.booleans(),  # has label
    st.integers(1, 3),  # copies of the prediction
    st.integers(1, 3),  # copies of the label
    st.integers(0, DAY),  # prediction ts
    st.integers(0, DAY),  # label ts
    st.sampled_from(["a", "b", "c"]),  # model
    st.integers(0, 1),  # prediction value
    st.integers(0, 1),  # label value
)


def events_of(pairs: list[tuple]) -> tuple[list, dict]:
    events: list[Prediction | GroundTruth] = []
    expected = {}
    for i, (has_p, has_l, cp, cl, pts, lts, model, pv, lv) in enumerate(pairs):
        pid = f"p{i}"
        if has_p:
            events += [pred(pid, pts, model, pv)] * cp
        if has_l:
            events += [label(pid, lts, lv)] * cl
        if has_p and has_l:
            expected[pid] = (model, pts, lts, pv, lv, float(pv != lv))
    return events, expected


@settings(max_examples=150, deadline=None)
@given(st.lists(pair, max_size=30), st.randoms(use_true_random=False))
def test_any_interleaving_and_duplication_gives_one_outcome_per_joined_pair(pairs, rnd):
    events, expected = events_of(pairs)
    rnd.shuffle(events)
    out = feed(Joiner({}, ttl_ms=TTL), events)
    got = {
        o.prediction_id: (
            o.model_id,
            o.event_time_ms,
            o.label_time_ms,
            o.prediction,
            o.label,
            o.error,
        )
        for o in out
    }
    assert len(out) == len(got), "a prediction_id was joined twice"
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(pair, max_size=30), st.randoms(use_true_random=False))
def test_counters_account_for_every_event(pairs, rnd):
    events, expected = events_of(pairs)
    rnd.shuffle(events)
    joiner = Joiner({}, ttl_ms=TTL)
    feed(joiner, events)
    t = joiner.stats.totals()
    n_pred = sum(isinstance(e, Prediction) for e in events)
    n_label = len(events) - n_pred
    assert t["predictions"] + t["duplicate_predictions"] == n_pred
    assert t["labels"] + t["duplicate_labels"] == n_label
    assert t["joined"] == len(expected)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(pair, min_size=1, max_size=20), st.randoms(use_true_random=False), st.integers(0, 60)
)
def test_restored_store_continues_identically(pairs, rnd, cut_at):
    """A worker that restarts from its changelogged store gives the same outcomes."""
    events, _ = events_of(pairs)
    rnd.shuffle(events)
    cut = min(cut_at, len(events))
    straight = feed(Joiner({}, ttl_ms=TTL), events)
    first = Joiner({}, ttl_ms=TTL)
    before = feed(first, events[:cut])
    restored_store = pickle.loads(pickle.dumps(dict(first.store)))
    second = Joiner(restored_store, ttl_ms=TTL)
    second.rebuild_index()
    after = feed(second, events[cut:])
    assert before + after == straight


def test_prediction_joins_at_exactly_ttl_and_expires_one_ms_later():
    j = Joiner({}, ttl_ms=TTL)
    j.add_prediction(pred("x", 1000))
    j.add_prediction(pred("y", 1000))
    j.add_prediction(pred("w1", 1000 + TTL))  # watermark = x.ts + ttl: x still waits
    assert j.add_label(label("x", 2000)) is not None
    j.add_prediction(pred("w2", 1000 + TTL + 1))  # now y is ttl + 1 behind: expired
    assert j.add_label(label("y", 2000)) is None
    stats = j.drain_stats()
    assert stats.expired_predictions == {"m": 1}
    assert stats.joined == {"m": 1}
    # the late label for y now waits as a label, and expires once a ttl behind
    j.add_prediction(pred("w3", 2000 + TTL + 1))
    assert j.drain_stats().expired_labels == 1
    assert "y" not in j.store


def test_label_first_waits_for_its_prediction():
    j = Joiner({}, ttl_ms=TTL)
    assert j.add_label(label("x", 500, value=0)) is None
    out = j.add_prediction(pred("x", 100, prediction=1))
    assert out is not None and out.error == 1.0 and out.label_time_ms == 500
    assert out.completed_ms == 500


def test_done_marker_expires_and_duplicates_after_it_are_counted_not_joined():
    j = Joiner({}, ttl_ms=TTL)
    j.add_prediction(pred("x", 0))
    assert j.add_label(label("x", 10)) is not None
    assert j.add_label(label("x", 20)) is None
    assert j.stats.duplicate_labels == 1
    j.add_prediction(pred("later", TTL + 1))
    assert "x" not in j.store  # the done marker is gone after the ttl, memory is bounded
    assert len(j) == 1


def test_unscorable_pair_is_reported_not_raised():
    j = Joiner({}, ttl_ms=TTL, task_for=lambda m: "regression")
    j.add_prediction(pred("x", 0, prediction=1.5))
    assert j.add_label(label("x", 1, value="cat")) is None
    (u,) = j.drain_unscorable()
    assert (u.prediction_id, u.model_id, u.label) == ("x", "m", "cat")
    assert u.detail
    assert j.stats.unscorable == {"m": 1}


def test_regression_error_is_absolute_difference():
    j = Joiner({}, ttl_ms=TTL)
    j.add_prediction(pred("x", 0, prediction=2.5))
    out = j.add_label(label("x", 1, value=4.0))
    assert out is not None and out.error == 1.5


def test_rejects_non_positive_ttl():
    import pytest

    with pytest.raises(ValueError, match="ttl_ms"):
        Joiner({}, ttl_ms=0)
