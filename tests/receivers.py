"""Real receivers on loopback for the notifier's channels: an HTTP server (webhooks, Slack,
PagerDuty) and an SMTP server (aiosmtpd). They record what arrives and answer as told."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import defaultdict, deque
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class HttpReceiver:
    """Records every request; answers each path from a queue of statuses (then 200).

    A status of 0 means "hang longer than any client timeout" (the request is recorded)."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.requests: list[Request] = []
        self.delay_s = delay_s
        self._script: dict[str, deque[int]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()
        self.url = ""

    def answer(self, path: str, *statuses: int) -> None:
        self._script[path].extend(statuses)

    def at(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Request(request.path, dict(request.headers), await request.read()))
        script = self._script[request.path]
        status = script.popleft() if script else 200
        if status == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), 30)
            status = 200
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=status, text="ok" if status < 400 else "nope")

    async def start(self) -> HttpReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, _o: Any):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"


class SmtpReceiver:
    """aiosmtpd on a free loopback port."""

    def __init__(self) -> None:
        self.mailbox = _Mailbox()
        self.port = free_port()
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return self.mailbox.messages

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
