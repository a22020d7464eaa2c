"""A silent broker is logged once when it has been silent for the session timeout, and
once when it answers again, whatever the pattern of probe answers and failures."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.broker_watch import BrokerWatch

SILENT_AFTER = 6.0


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.endswith("broker_watch")]


def test_an_outage_gives_one_error_and_one_recovery_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    watch = BrokerWatch(SILENT_AFTER, 20, now=100.0)
    for t in (102.0, 104.0):
        watch.failed(t, "TimeoutError")
    assert not watch.down and not _lines(caplog)  # shorter than the session timeout
    for t in (106.0, 108.0, 110.0):
        watch.failed(t, "TimeoutError")
    assert watch.down
    [(level, text)] = _lines(caplog)
    assert level == logging.ERROR
    assert (
        "not answered for 6 s (TimeoutError)" in text and "exits with code 70 within 20 s" in text
    )
    watch.answered(113.0)
    watch.answered(115.0)
    assert not watch.down
    (_, _), (level, text) = _lines(caplog)
    assert level == logging.WARNING and "answers again after 13 s" in text


@given(st.lists(st.tuples(st.floats(0.1, 5.0), st.booleans()), max_size=60))
def test_every_logged_outage_is_one_silence_of_at_least_the_timeout(
    probes: list[tuple[float, bool]],
) -> None:
    """Replaying any sequence of probes: one error line per silence of at least
    SILENT_AFTER seconds (counted from the last answer), and one recovery per error that
    an answer followed."""
    logger = logging.getLogger("streams.worker.broker_watch")
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.levelname)

    handler = Collect()
    logger.addHandler(handler)
    try:
        watch = BrokerWatch(SILENT_AFTER, 20, now=0.0)
        now, last_answer, expected = 0.0, 0.0, []
        down = False
        for step, ok in probes:
            now += step
            if ok:
                watch.answered(now)
                if down:
                    expected.append("WARNING")
                down, last_answer = False, now
            else:
                watch.failed(now, "TimeoutError")
                if not down and now - last_answer >= SILENT_AFTER:
                    expected.append("ERROR")
                    down = True
            assert watch.down == down
    finally:
        logger.removeHandler(handler)
    assert seen == expected
