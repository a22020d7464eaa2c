"""Command-line options for Kafka and Redis security, and the warning about passwords in
argv: whatever is on a command line is readable by every user of the machine (``ps``,
``/proc/PID/cmdline``), so each secret also has an environment variable and a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO, get_args
from urllib.parse import urlsplit

from streams.settings import SASL_MECHANISMS, KafkaSecurity, SecurityProtocol

__all__ = [
    "KAFKA_FLAG_FIELDS",
    "REDIS_FLAG_FIELDS",
    "add_kafka_flags",
    "add_redis_flags",
    "kafka_from",
    "secrets_in_argv",
    "warn_about_secrets_in_argv",
]

KAFKA_FLAG_FIELDS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "sasl_password_file",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_key_password_file",
)
"""KafkaSecurity fields that have a ``--kafka-*`` option (dest ``kafka_<field>``)."""

REDIS_FLAG_FIELDS = (
    "redis_url",
    "redis_username",
    "redis_password",
    "redis_password_file",
    "redis_ca_file",
)
"""Settings fields that have a ``--redis*`` option."""

_KAFKA_INSTEAD = "WATCHKEEPER_KAFKA_SASL_PASSWORD or WATCHKEEPER_KAFKA_SASL_PASSWORD_FILE"
_REDIS_INSTEAD = "WATCHKEEPER_REDIS_PASSWORD or WATCHKEEPER_REDIS_PASSWORD_FILE"
_ARGV_SECRETS = {  # dest: (option, where the secret should go instead)
    "kafka_sasl_password": ("--kafka-sasl-password", _KAFKA_INSTEAD),
    "redis_password": ("--redis-password", _REDIS_INSTEAD),
}


def add_kafka_flags(p: argparse.ArgumentParser) -> None:
    """``--kafka-*`` options; each overrides its WATCHKEEPER_KAFKA_* variable."""
    g = p.add_argument_group(
        "Kafka security", "each option overrides WATCHKEEPER_KAFKA_<NAME> (default PLAINTEXT)"
    )
    g.add_argument(
        "--kafka-security-protocol",
        type=str.upper,
        choices=get_args(SecurityProtocol),
        help="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (TLS + SASL)",
    )
    g.add_argument("--kafka-sasl-mechanism", type=str.upper, choices=SASL_MECHANISMS)
    g.add_argument("--kafka-sasl-username", metavar="USER")
    g.add_argument(
        "--kafka-sasl-password-file",
        type=Path,
        metavar="FILE",
        help="read the SASL password from FILE (or env WATCHKEEPER_KAFKA_SASL_PASSWORD)",
    )
    g.add_argument(
        "--kafka-sasl-password",
        metavar="PASSWORD",
        help="discouraged: visible to every user in the process list; use the file or env",
    )
    g.add_argument("--kafka-ssl-cafile", type=Path, metavar="FILE", help="CA bundle (PEM)")
    g.add_argument("--kafka-ssl-certfile", type=Path, metavar="FILE", help="client cert (PEM)")
    g.add_argument("--kafka-ssl-keyfile", type=Path, metavar="FILE", help="client key (PEM)")
    g.add_argument(
        "--kafka-ssl-key-password-file", type=Path, metavar="FILE", help="password of the key"
    )


def add_redis_flags(p: Any) -> None:
    """``--redis`` and its credentials on parser or argument group ``p``; each overrides
    its WATCHKEEPER_REDIS_* variable."""
    p.add_argument(
        "--redis",
        dest="redis_url",
        metavar="URL",
        help="redis://host:port/db or rediss:// for TLS (env WATCHKEEPER_REDIS_URL); "
        "no password in it: use WATCHKEEPER_REDIS_PASSWORD(_FILE)",
    )
    p.add_argument("--redis-username", metavar="USER", help="ACL user (env ..._REDIS_USERNAME)")
    p.add_argument(
        "--redis-password-file",
        type=Path,
        metavar="FILE",
        help="read the Redis password from FILE (or env WATCHKEEPER_REDIS_PASSWORD)",
    )
    p.add_argument(
        "--redis-password",
        metavar="PASSWORD",
        help="discouraged: visible to every user in the process list; use the file or env",
    )
    p.add_argument(
        "--redis-ca-file", type=Path, metavar="FILE", help="CA of a rediss:// server (PEM)"
    )


def kafka_from(args: argparse.Namespace) -> KafkaSecurity | None:
    """KafkaSecurity from the ``--kafka-*`` options given over the environment, or None
    when none was given (the environment alone then decides)."""
    given = {
        name: getattr(args, f"kafka_{name}")
        for name in KAFKA_FLAG_FIELDS
        if getattr(args, f"kafka_{name}", None) is not None
    }
    return KafkaSecurity(**given) if given else None


def secrets_in_argv(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(option, where the secret should go instead) for each secret given on the command
    line: a password option, or a ``--redis`` URL with a password in it."""
    found = [spot for dest, spot in _ARGV_SECRETS.items() if getattr(args, dest, None) is not None]
    url = getattr(args, "redis_url", None)
    if url:
        try:
            has_password = urlsplit(url).password is not None
        except ValueError:
            has_password = False
        if has_password:
            found.append(("--redis URL with a password", _REDIS_INSTEAD))
    return found


def warn_about_secrets_in_argv(args: argparse.Namespace, out: TextIO | None = None) -> bool:
    """Print one WARNING naming each secret given in argv; True if there was one."""
    found = secrets_in_argv(args)
    if not found:
        return False
    lines = "; ".join(f"{option}: use {instead}" for option, instead in found)
    print(
        "watchkeeper: WARNING: a password on the command line is visible to every user of "
        f"this machine in the process list. Put it in the environment or in a file: {lines}",
        file=out or sys.stderr,
    )
    return True
