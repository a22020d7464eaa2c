"""One way to open Redis for commands and processes: a client whose connection failures
become :class:`~streams.errors.WatchkeeperError` messages naming the URL (password hidden),
instead of tracebacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.connections import redis_client
from streams.errors import ConfigError, WatchkeeperError
from streams.redact import redact
from streams.settings import Settings

__all__ = ["CONNECT_TIMEOUT_S", "redis_session"]

CONNECT_TIMEOUT_S = 5.0


@asynccontextmanager
async def redis_session(settings: Settings) -> AsyncIterator[Redis]:
    """A connected client (pinged), closed on exit; Redis errors become clear messages."""
    shown = redact(settings.redis_url)
    try:
        redis = redis_client(settings, socket_connect_timeout=CONNECT_TIMEOUT_S)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {shown}: {exc}") from exc
    try:
        await redis.ping()
        yield redis
    except AuthenticationError as exc:  # a ConnectionError to redis-py: caught first
        raise WatchkeeperError(
            f"Redis at {shown} refused the credentials: {exc} (set WATCHKEEPER_REDIS_PASSWORD "
            "or WATCHKEEPER_REDIS_PASSWORD_FILE, and WATCHKEEPER_REDIS_USERNAME for an ACL user)"
        ) from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise WatchkeeperError(
            f"cannot reach Redis at {shown}: {exc} (set --redis or WATCHKEEPER_REDIS_URL)"
        ) from exc
    except RedisError as exc:
        raise WatchkeeperError(f"Redis at {shown} refused the request: {exc}") from exc
    finally:
        await redis.aclose()
