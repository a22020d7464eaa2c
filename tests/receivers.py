"""Real receivers on loopback for the notifier's channels: an HTTP server (webhooks, Slack,
PagerDuty), an SMTP server (aiosmtpd) and a TCP server that hangs up on every connection.
They record what arrives and answer as told; given the webhook secret, the HTTP receiver
also checks each request's ``X-Watchkeeper-Signature`` as a real receiver would."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import socket
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any, Self

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller

from streams.notify.channels import SIGNATURE_HEADER, verify_signature


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"
    verified: bool | None = None  # the signature checked out (None: no secret to check)

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body`` defaults to "ok" below 400 and "nope" from 400."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""


class HttpReceiver:
    """Records every request; answers each path from a queue of replies (then 200).

    A reply is a status or a :class:`Reply` (status, response headers, body). A status of 0
    means "hang longer than any client timeout" (the request is recorded). With a
    ``secret``, each request's signature is verified (timestamp within 300 s) and the
    result recorded in :attr:`Request.verified`."""

    def __init__(self, *, delay_s: float = 0.0, secret: str | None = None) -> None:
        self.requests: list[Request] = []
        self.delay_s = delay_s
        self.secret = secret
        self._script: dict[str, deque[int | Reply]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()
        self.url = ""

    def answer(self, path: str, *replies: int | Reply) -> None:
        self._script[path].extend(replies)

    def at(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        verified = None
        if self.secret is not None:
            verified = verify_signature(body, request.headers.get(SIGNATURE_HEADER), self.secret)
        self.requests.append(
            Request(request.path, dict(request.headers), body, request.method, verified)
        )
        script = self._script[request.path]
        reply = script.popleft() if script else 200
        if isinstance(reply, int):
            reply = Reply(reply)
        if reply.status == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), 30)
            reply = Reply(200)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = reply.body or ("ok" if reply.status < 400 else "nope")
        return web.Response(status=reply.status, text=text, headers=dict(reply.headers))

    async def start(self) -> HttpReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class _Mailbox:
    """Accepts mail, except for recipients in ``refuse`` (550) or in ``replies`` (that reply,
    e.g. ``"451 4.3.0 try again later"``)."""

    def __init__(self) -> None:
        self.received: list[Mail] = []
        self.refuse: set[str] = set()
        self.replies: dict[str, str] = {}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, _o: Any):  # noqa: N802
        if address in self.replies:
            return self.replies[address]
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


class SmtpReceiver:
    """aiosmtpd on a free loopback port; keyword arguments go to its ``Controller``
    (``authenticator=``, ``tls_context=``, ``require_starttls=``, ...)."""

    def __init__(self, **controller: Any) -> None:
        self.mailbox = _Mailbox()
        self.port = free_port()
        self._controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, **controller
        )

    @property
    def received(self) -> list[Mail]:
        return self.mailbox.received

    @property
    def messages(self) -> list[EmailMessage]:
        return [mail.message for mail in self.mailbox.received]

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


class _RawServer:
    """A TCP server on loopback whose connections :meth:`handle` serves."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class HangUpServer(_RawServer):
    """Accepts TCP connections and closes them at once: the peer hangs up mid-request
    (before an HTTP answer, before an SMTP greeting)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()


class GarbageServer(_RawServer):
    """Reads a request and answers bytes that are not HTTP: the client's parser fails, and
    aiohttp's error quotes the request URL (with whatever secret the URL holds)."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
            await writer.drain()
        writer.close()


def free_port() -> int:
    """A loopback port that was just bound and released: nothing listens on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
