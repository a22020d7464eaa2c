"""Says in the log when the broker stops answering, and when it answers again.

A broker that hangs, or a network partition, leaves aiokafka waiting for its request
timeout, and neither it nor Faust logs anything meanwhile: the worker looked healthy while
every partition stalled. The worker asks the broker for metadata every ``interval_s``;
this class turns the answers and failures into two log lines per outage.
"""

from __future__ import annotations

import logging

__all__ = ["BrokerWatch"]

log = logging.getLogger(__name__)


class BrokerWatch:
    """The broker's state as the worker's probes see it (times are seconds of a
    monotonic clock, passed in)."""

    def __init__(self, silent_after_s: float, stop_bound_s: float, now: float) -> None:
        self.silent_after_s = silent_after_s
        self.stop_bound_s = stop_bound_s  # how long a SIGTERM may take meanwhile
        self.last_answer = now
        self.reported_down: float | None = None  # last_answer when the outage was logged

    def answered(self, now: float) -> None:
        if self.reported_down is not None:
            log.warning(
                "the broker answers again after %.0f s without an answer; the worker goes "
                "on (if its session expired meanwhile it rejoins the group and reloads "
                "the state of its partitions)",
                now - self.reported_down,
            )
            self.reported_down = None
        self.last_answer = now

    def failed(self, now: float, why: str) -> None:
        silent = now - self.last_answer
        if self.reported_down is None and silent >= self.silent_after_s:
            log.error(
                "the broker has not answered for %.0f s (%s): every partition stalls, "
                "and the group expires this worker's session; it waits and goes on when "
                "the broker answers, and on SIGTERM meanwhile exits with code 70 within "
                "%.0f s",
                silent, why, self.stop_bound_s,
            )  # fmt: skip
            self.reported_down = self.last_answer

    @property
    def down(self) -> bool:
        return self.reported_down is not None
