"""The event-time buckets of a model's health history (``watchkeeper ui``, ``status``).

Counts are kept per bucket of the prediction's event time, exact whatever the speed the
events are processed at: a backfill of days in seconds draws the same history as live
traffic. The detect step counts (:class:`~streams.engine.detect_step.DetectOutput`), the
store sums them in Redis (:mod:`streams.store.health`).
"""

from __future__ import annotations

__all__ = ["SERIES_BUCKET_MS", "SERIES_POINTS", "bucket_of"]

SERIES_BUCKET_MS = 60 * 60 * 1000
SERIES_POINTS = 120
"""Five days of hours per model: under Redis's 128-entry limit for a small hash's compact
encoding (listpack), so a model's history takes about 4 KB, not the 234 KB that a week of
quarter hours in three fields each and an index took (2.3 GB for 10,000 models)."""


def bucket_of(event_time_ms: int) -> int:
    """The start of the bucket holding ``event_time_ms`` (UTC hours)."""
    return event_time_ms - event_time_ms % SERIES_BUCKET_MS
