"""The notifier's commit point never passes an unfinished message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.notify.loop import parse_alert
from streams.notify.offsets import OffsetTracker


@given(
    n=st.integers(1, 60),
    order=st.data(),
)
def test_commit_point_is_first_unfinished(n: int, order: st.DataObject) -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    for offset in range(n):
        tracker.start("p0", offset)
    finished = order.draw(st.permutations(list(range(n))))
    cut = order.draw(st.integers(0, n))
    done = set(finished[:cut])
    for offset in finished[:cut]:
        tracker.done("p0", offset)
    expected = min(set(range(n)) - done, default=n)
    assert tracker.committable() == {"p0": expected}
    assert tracker.pending == n - cut


def test_commit_moves_once_and_forgets_revoked() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.start("a", 5)
    tracker.start("b", 0)
    tracker.done("a", 5)
    assert tracker.committable() == {"a": 6, "b": 0}
    tracker.committed({"a": 6, "b": 0})
    assert tracker.committable() == {}
    tracker.done("b", 0)
    assert tracker.committable() == {"b": 1}
    tracker.forget("b")
    assert tracker.committable() == {}


def test_parse_alert_names_the_problem() -> None:
    ok, why = parse_alert(
        b'{"alert_id": "x", "model_id": "m", "kind": "performance_degradation", '
        b'"severity": "critical"}'
    )
    assert ok is not None and why == ""
    for raw, needle in [
        (b"{", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"alert_id": "", "model_id": "m", "kind": "k", "severity": "info"}', "alert_id"),
        (b'{"alert_id": "a", "model_id": "m", "kind": "k", "severity": "loud"}', "severity"),
        (b'{"alert_id": "a", "kind": "k", "severity": "info"}', "model_id"),
    ]:
        alert, why = parse_alert(raw)
        assert alert is None and needle in why
