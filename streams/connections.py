"""How every client of the project reaches Kafka and Redis.

Each aiokafka client is built with :func:`aiokafka_kwargs` and each Redis client with
:func:`redis_client`, so a client cannot connect without the configured TLS and
credentials (``tests/unit/test_kafka_security.py`` checks every construction site). Faust
gets the same options through :func:`streams.worker.broker_auth.faust_credentials`, which
is built on :func:`kafka_security_kwargs`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from redis.asyncio import Redis

from streams.errors import ConfigError, TopologyError
from streams.settings import KafkaSecurity, Settings

__all__ = [
    "BROKER_CHECK_S",
    "aiokafka_kwargs",
    "check_broker",
    "kafka_security_kwargs",
    "kafka_ssl_context",
    "redis_client",
    "redis_security_kwargs",
]


def kafka_ssl_context(kafka: KafkaSecurity) -> ssl.SSLContext | None:
    """The client TLS context (hostname checked, system CAs unless ``ssl_cafile``), or
    None when the protocol does not use TLS."""
    if not kafka.uses_ssl:
        return None
    password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
    try:
        return create_ssl_context(
            cafile=kafka.ssl_cafile,
            certfile=kafka.ssl_certfile,
            keyfile=kafka.ssl_keyfile,
            password=password,
        )
    except (OSError, ssl.SSLError) as exc:  # unreadable, not PEM, key not of the cert
        files = ", ".join(
            str(p) for p in (kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile) if p
        )
        raise ConfigError(f"Kafka TLS: cannot load {files or 'the system CAs'}: {exc}") from exc


def kafka_security_kwargs(kafka: KafkaSecurity) -> dict[str, Any]:
    """The security keywords of every aiokafka client (consumer, producer, admin)."""
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    context = kafka_ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None  # KafkaSecurity validated it
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def aiokafka_kwargs(bootstrap_servers: str, kafka: KafkaSecurity) -> dict[str, Any]:
    """Where and how an aiokafka client connects: ``AIOKafkaConsumer(**aiokafka_kwargs(
    settings.bootstrap_servers, settings.kafka), group_id=...)``."""
    return {"bootstrap_servers": bootstrap_servers, **kafka_security_kwargs(kafka)}


BROKER_CHECK_S = 10.0
"""How long a command waits for the broker's first answer before it says it found none
(aiokafka's own bootstrap waits out its 40 s request timeout on a port that is not Kafka)."""


async def check_broker(
    bootstrap_servers: str, kafka: KafkaSecurity, *, timeout_s: float = BROKER_CHECK_S
) -> None:
    """Fail fast, in one line, when no Kafka broker answers at ``bootstrap_servers``."""
    client = AIOKafkaClient(
        **aiokafka_kwargs(bootstrap_servers, kafka), request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        raise TopologyError(
            f"no Kafka broker answered at {bootstrap_servers} within {timeout_s:g} s ({why}); "
            "check --broker / WATCHKEEPER_BROKER and the Kafka security settings"
        ) from None
    finally:
        await client.close()


def redis_security_kwargs(settings: Settings) -> dict[str, Any]:
    """Credentials and CA for ``Redis.from_url``. redis-py lets the URL override these;
    :class:`~streams.settings.Settings` refuses a credential given in both places."""
    options: dict[str, Any] = {}
    if settings.redis_username is not None:
        options["username"] = settings.redis_username
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ca_file)
    return options


def redis_client(settings: Settings, **options: Any) -> Redis:
    """A Redis client for ``settings.redis_url`` with the configured credentials and CA;
    ``options`` (timeouts, retry) go to ``Redis.from_url``."""
    return Redis.from_url(settings.redis_url, **redis_security_kwargs(settings), **options)
