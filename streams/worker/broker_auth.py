"""The Faust app's broker credentials, from the options every aiokafka client gets.

Faust's aiokafka driver turns ``broker_credentials`` back into aiokafka keywords for its
consumer and producer (``credentials_to_aiokafka_auth``); building the credentials from
:func:`streams.connections.kafka_security_kwargs` keeps the worker's Faust clients and
its own aiokafka clients on the same TLS context and SASL settings.
"""

from __future__ import annotations

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from streams.connections import kafka_security_kwargs
from streams.settings import KafkaSecurity

__all__ = ["faust_credentials"]


def faust_credentials(kafka: KafkaSecurity) -> CredentialsT | None:
    """``broker_credentials`` for ``faust.App``: None for PLAINTEXT."""
    options = kafka_security_kwargs(kafka)
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return SSLCredentials(options["ssl_context"])
    # SASLCredentials is SASL_SSL exactly when it has an SSL context
    return SASLCredentials(
        username=options["sasl_plain_username"],
        password=options["sasl_plain_password"],
        mechanism=options["sasl_mechanism"],
        ssl_context=options.get("ssl_context"),
    )
