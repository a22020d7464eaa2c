"""The whole stream stopped: no prediction reached the topic for a while, on the wall clock.

Event time cannot see this (a watermark that does not move is all it would show), so it
is judged live from the predictions topic's end offsets, which every worker reads alike:
each raises the same fleet ``model_silent`` alert, whatever partitions it owns. Outside
replay equivalence by nature.
"""

from __future__ import annotations

__all__ = ["StreamSilence"]


class StreamSilence:
    """Fed the predictions topic's total end offset now and then; says when to alert."""

    def __init__(self, quiet_s: float, now: float) -> None:
        self.quiet_s = quiet_s
        self.total: int | None = None
        self.changed = now
        self.silent = False

    def observe(self, total: int, now: float) -> str | None:
        """``"firing"`` when the stream just went quiet for ``quiet_s``, ``"resolved"``
        when it moved again after that, else None."""
        if total != self.total:
            first = self.total is None
            self.total, self.changed = total, now
            if self.silent and not first:
                self.silent = False
                return "resolved"
            return None
        if not self.silent and self.quiet_s > 0 and now - self.changed >= self.quiet_s:
            self.silent = True
            return "firing"
        return None
