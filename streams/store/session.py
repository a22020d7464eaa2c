"""One way to open Redis for commands and processes: a client whose connection failures
become :class:`~streams.errors.WatchkeeperError` messages naming the URL (password hidden),
instead of tracebacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.errors import ConfigError, WatchkeeperError

__all__ = ["CONNECT_TIMEOUT_S", "redacted", "redis_session"]

CONNECT_TIMEOUT_S = 5.0


def redacted(url: str) -> str:
    """The Redis URL without its password, fit for error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + netloc))
    except ValueError:
        return "<unparseable URL>"


@asynccontextmanager
async def redis_session(url: str) -> AsyncIterator[Redis]:
    """A connected client (pinged), closed on exit; Redis errors become clear messages."""
    shown = redacted(url)
    try:
        redis = Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {shown}: {exc}") from exc
    try:
        await redis.ping()
        yield redis
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise WatchkeeperError(
            f"cannot reach Redis at {shown}: {exc} (set --redis or WATCHKEEPER_REDIS_URL)"
        ) from exc
    except RedisError as exc:
        raise WatchkeeperError(f"Redis at {shown} refused the request: {exc}") from exc
    finally:
        await redis.aclose()
