"""``watchkeeper ui``: serve the read-only fleet page (see :mod:`streams.ui`)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streams.settings import Settings

__all__ = ["add_ui_command", "run_ui"]


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def add_ui_command(sub: Any, connection_flags: Any) -> None:
    """Add ``ui``; ``connection_flags`` adds the --broker/--redis style flags (the alert
    list reads the alerts topic, the rest reads Redis)."""
    ui = sub.add_parser(
        "ui",
        help="a read-only web page of the fleet, each model's history and its alerts",
        description=(
            "Serve a read-only web page: the fleet worst first, and per model its error "
            "rate and label coverage over time and its alerts. Plain HTML, no JavaScript."
        ),
    )
    ui.add_argument(
        "--port", type=port_number, required=True, help="TCP port to listen on (0: any free)"
    )
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; the page has no login)",
    )
    connection_flags(ui, broker=True)


def run_ui(args: argparse.Namespace, settings: Settings) -> int:
    from streams.ui.server import serve

    asyncio.run(serve(settings, host=args.host, port=args.port))
    return 0
