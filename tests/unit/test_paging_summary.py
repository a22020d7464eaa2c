"""The pure parts of paging through crashes: the fallback's dead-letter summary is the same
page on every replica (so they deduplicate it), and claim values of every format parse."""

from __future__ import annotations

from streams.notify.loop import (
    HELD_SUMMARY_KIND,
    ORPHAN_SUMMARY_KIND,
    SUMMARY_KIND,
    _held_summary_note,
    _orphan_summary_note,
    _summary_note,
)
from streams.store.paging import UNKNOWN_PAGE, Window, WindowCounts, _parse_pending

COUNTS = {
    "total": 14,
    "reason:delivery_failed": 9,
    "reason:delivery_in_doubt": 5,
    "channel:webhook": 10,
    "channel:email": 4,
    **{f"model:m{i:02d}": 1 for i in range(12)},
    "model:fraud": 2,
}


def test_the_summary_is_the_same_page_on_every_replica() -> None:
    one = _summary_note(1_800_000_000_000, 300, dict(COUNTS))
    other = _summary_note(1_800_000_000_000, 300, dict(reversed(list(COUNTS.items()))))
    assert one == other and one.delivery_id == other.delivery_id
    later = _summary_note(1_800_000_300_000, 300, dict(COUNTS))
    assert later.delivery_id != one.delivery_id  # one summary per window


def test_the_summary_says_how_many_why_where_and_whose() -> None:
    note = _summary_note(1_800_000_000_000, 300, COUNTS)
    alert = note.primary
    assert alert["kind"] == SUMMARY_KIND and alert["severity"] == "critical"
    assert alert["alert_id"] == "dead-letters-1800000000000"
    assert (alert["window_start"], alert["window_end"]) == (
        "2027-01-15T08:00:00.000Z",
        "2027-01-15T08:05:00.000Z",
    )
    text = note.details["summary"]
    assert text.startswith("14 page deliveries were dead-lettered between")
    assert "Reasons: delivery_failed 9, delivery_in_doubt 5." in text
    assert "Channels: webhook 10, email 4." in text
    assert "Models: fraud 2, m00 1," in text and "and 3 more." in text  # 13 models, 10 shown
    assert note.details["dead_letters"]["reasons"] == {"delivery_failed": 9, "delivery_in_doubt": 5}
    assert len(note.details["models"]) == 13


def test_claim_values_parse_in_every_format() -> None:
    assert _parse_pending("pending|tok|1700000000000||0") == ("tok", 1_700_000_000_000, "", 0)
    assert _parse_pending("pending|tok|17|abc|2") == ("tok", 17, "abc", 2)
    # written before pages were recorded: in doubt, page unknown
    assert _parse_pending("pending|tok|17") == ("tok", 17, UNKNOWN_PAGE, 0)
    for finished in ("sent|17", "dlq|http 400: nope", "in_doubt|"):
        assert _parse_pending(finished) is None


def test_the_orphan_summary_lists_the_first_models_and_counts_the_rest() -> None:
    found = WindowCounts({"total": 5000}, tuple(f"m{i}" for i in range(10)))
    note = _orphan_summary_note(1_800_000_000_000, 300, found)
    assert note == _orphan_summary_note(1_800_000_000_000, 300, found)  # same on every replica
    assert note.primary["kind"] == ORPHAN_SUMMARY_KIND
    assert note.primary["alert_id"] == "orphans-1800000000000"
    assert note.details["orphans"] == {
        "total": 5000,
        "models": [f"m{i}" for i in range(10)],
        "more": 4990,
    }
    assert "m0, m1," in note.details["summary"] and "and 4990 more" in note.details["summary"]
    later = _orphan_summary_note(1_800_000_300_000, 300, found)
    assert later.delivery_id != note.delivery_id


def test_the_held_back_summary_is_per_channel_and_minute_at_the_worst_severity() -> None:
    found = WindowCounts(
        {"pages": 7, "alerts": 9, "severity:warning": 6, "severity:critical": 3}, ("a", "b")
    )
    note = _held_summary_note("abc123", 1_800_000_000_000, 30, found)
    assert note.primary["kind"] == HELD_SUMMARY_KIND and note.primary["severity"] == "critical"
    assert note.primary["alert_id"] == "held-abc123-1800000000000"
    assert note.details["held_back"]["pages"] == 7 and note.details["held_back"]["alerts"] == 9
    assert "more than 30 pages a minute" in note.details["summary"]
    other = _held_summary_note("def456", 1_800_000_000_000, 30, found)
    assert other.delivery_id != note.delivery_id


def test_window_ids_round_trip() -> None:
    for window in (Window("dead", 1_800_000_000_000), Window("held", 17, "abc123")):
        assert Window.parse(window.family, window.id) == window
