"""What a worker does while Redis is unreachable: keep watching, and catch up afterwards.

Redis holds the shared counters, health snapshots, the owner registry and orphan markers.
The join and the detectors need none of it: their state is in Kafka. A worker that died
with Redis would stop the watch itself, and a restart would not help until Redis is back.
So the worker's Redis calls go through one :class:`RedisBreaker`: a call that fails
opens it, and while it is open the worker does not call Redis at all
(counters and snapshots are buffered, owner checks deferred, alerts go out without the
owner's name), so that a down or hung server costs one timeout per retry, not one per
batch. The first call after the wait tries again; its success closes the breaker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from streams.connections import redis_client
from streams.settings import Settings

__all__ = ["OUTAGE_ERRORS", "RedisBreaker", "worker_redis"]

log = logging.getLogger(__name__)

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)
"""Everything Redis can fail with: refused or reset connections, timeouts, a server still
loading its data, a read-only replica during a failover, and error replies such as OOM
at ``maxmemory``. None of them is worth stopping the watch for; each is logged."""

WORKER_TIMEOUT_S = 2.0
"""Connect and command timeout of a worker's Redis client: a hung server stalls a batch
at most this long per retry (the largest write, 1,000 hashes in one script call, takes a
few milliseconds)."""


def worker_redis(settings: Settings) -> Redis:
    """A Redis client that fails fast: no retries inside redis-py (its default retries ten
    times, up to a second apart, while the batch waits); the breaker decides when to
    try again."""
    return redis_client(
        settings,
        socket_connect_timeout=WORKER_TIMEOUT_S,
        socket_timeout=WORKER_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


class RedisBreaker:
    """Open after an outage error, for a wait that doubles per failure up to ``max_wait_s``."""

    def __init__(
        self,
        *,
        first_wait_s: float = 1.0,
        max_wait_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._retry_at = 0.0
        self._wait_s = first_wait_s
        self._down_since: float | None = None
        self.failures = 0  # failed calls in this outage
        self.outages = 0  # outages since the worker started

    @property
    def down(self) -> bool:
        """True from the first failure until a call succeeds again."""
        return self._down_since is not None

    def available(self) -> bool:
        """Whether to call Redis now (always while it is up; once per wait while it is down)."""
        return self._clock() >= self._retry_at

    def failed(self, what: str, exc: BaseException) -> None:
        now = self._clock()
        self.failures += 1
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            log.warning(
                "Redis unreachable or failing while %s (%s: %s); the worker goes on: counters and "
                "snapshots are buffered, owner checks deferred, alerts published without "
                "their owner. Retrying in %.0f s.",
                what, type(exc).__name__, exc, self._wait_s,
            )  # fmt: skip
        else:
            log.debug("Redis still failing while %s: %s", what, exc)
        self._retry_at = now + self._wait_s
        self._wait_s = min(self._wait_s * 2, self.max_wait_s)

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.warning(
                "Redis reachable again after %.1f s (%d failed calls); writing what was "
                "buffered",
                self._clock() - self._down_since, self.failures,
            )  # fmt: skip
        self._down_since = None
        self._retry_at = 0.0
        self._wait_s = self.first_wait_s
        self.failures = 0
