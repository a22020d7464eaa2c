"""The UI's HTTP server (aiohttp): GET routes that read the views and render
:mod:`streams.ui.pages`. Nothing here writes: acks and silences stay on the CLI, where
they name who did them.

The data comes through :class:`UiSource` so that the routes can be tried on constructed
dataclasses; :class:`RedisSource` is the real one (health snapshots and the owner
registry in Redis, alerts from the alerts topic)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, runtime_checkable

from aiohttp import web
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streams.errors import ConfigError, WatchkeeperError
from streams.settings import Settings
from streams.store.health import HealthStore, SeriesPoint
from streams.store.session import redis_session
from streams.ui import pages
from streams.views.fleet import ModelStatus, fleet_status
from streams.views.history import AlertEntry, alert_history, find_alert, parse_since
from streams.views.report import Report, read_report

__all__ = ["RedisSource", "UiSource", "build_app", "serve"]

log = logging.getLogger(__name__)

ALERTS_SHOWN = 200  # newest alerts on a model page; the CLI's ``alerts`` has them all
READ_TIMEOUT_S = 15.0  # a page waits this long for Redis or the broker, then says so
T = TypeVar("T")
_ALERT_ID = re.compile(r"[0-9a-fA-F]{4,32}")
_HEADERS = {
    # no script may run, whatever a model id or message holds; styles are inline
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class UiSource(Protocol):
    """What the pages read."""

    async def fleet(self) -> list[ModelStatus]: ...

    async def series(self, model_id: str) -> list[SeriesPoint]: ...

    async def alerts(self, model_id: str) -> list[AlertEntry]: ...

    async def alert(self, alert_id: str) -> AlertEntry:
        """The alert with this id or unique prefix; WatchkeeperError if none or several."""
        ...


@runtime_checkable
class ReportSource(Protocol):
    """A source that can also assemble the maintenance scorecard (``/report``)."""

    async def report(self, since_ms: int) -> Report: ...


class RedisSource:
    """The views over a live Redis and the alerts topic."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.health = HealthStore(redis, settings.redis_prefix)

    async def fleet(self) -> list[ModelStatus]:
        return await fleet_status(self.redis, self.settings)

    async def series(self, model_id: str) -> list[SeriesPoint]:
        return await self.health.series(model_id)

    async def alerts(self, model_id: str) -> list[AlertEntry]:
        entries = await alert_history(self.settings, self.redis, model=model_id)
        return entries[:ALERTS_SHOWN]

    async def alert(self, alert_id: str) -> AlertEntry:
        return await find_alert(self.settings, self.redis, alert_id)

    async def report(self, since_ms: int) -> Report:
        return await read_report(self.redis, self.settings, since_ms=since_ms)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def build_app(source: UiSource, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The application: ``/``, ``/models/{id}``, ``/alerts/{id}``, ``/report``, ``/healthz``."""

    def now_ms() -> int:
        return int(clock() * 1000)

    async def read(what: str, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, READ_TIMEOUT_S)
        except TimeoutError:
            raise _Unavailable(f"{what}: no answer within {READ_TIMEOUT_S:.0f} s") from None
        except (RedisError, KafkaError, OSError) as exc:
            raise _Unavailable(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def fleet(request: web.Request) -> web.Response:
        models = await read("reading the fleet from Redis", source.fleet())
        return _html(pages.fleet_page(models, now_ms=now_ms()))

    async def model(request: web.Request) -> web.Response:
        model_id = request.match_info.get("model_id", request.query.get("id", ""))
        models = await read("reading the fleet from Redis", source.fleet())
        status = next((m for m in models if m.model_id == model_id), None)
        if status is None:
            return _html(
                pages.not_found_page(
                    f"No model {model_id!r}: no worker has a health snapshot of it and no "
                    "owner is registered for it.",
                    now_ms=now_ms(),
                ),
                404,
            )
        series, listed = await asyncio.gather(
            read("reading the model's history from Redis", source.series(model_id)),
            _alerts_or_why(model_id),
        )
        alerts, why = listed
        return _html(
            pages.model_page(status, series, alerts, now_ms=now_ms(), alerts_unavailable=why)
        )

    async def _alerts_or_why(model_id: str) -> tuple[list[AlertEntry], str | None]:
        """The model's alerts, or why the topic could not be read: the status and the
        chart come from Redis and are still shown."""
        try:
            return await read("reading the alerts topic", source.alerts(model_id)), None
        except (_Unavailable, WatchkeeperError) as exc:
            log.warning("ui: alerts of %r: %s", model_id, exc)
            return [], str(exc)

    async def alert(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        if not _ALERT_ID.fullmatch(alert_id):
            return _html(
                pages.not_found_page(
                    f"{alert_id!r} is not an alert id (4 to 32 characters, 0-9 and a-f).",
                    now_ms=now_ms(),
                ),
                404,
            )
        try:
            entry = await read("reading alerts from the alerts topic", source.alert(alert_id))
        except ConfigError as exc:  # none or several with this prefix
            return _html(pages.not_found_page(str(exc), now_ms=now_ms()), 404)
        return _html(pages.alert_page(entry, now_ms=now_ms()))

    async def report(request: web.Request) -> web.Response:
        """``/report?since=7d&owner=NAME``: the maintenance scorecard."""
        if not isinstance(source, ReportSource):
            raise web.HTTPNotFound()
        since_text = request.query.get("since", "7d")
        try:
            since_ms = parse_since(since_text, now_ms())
        except ConfigError as exc:
            return _html(pages.not_found_page(str(exc), now_ms=now_ms()), 400)
        what = "reading the scorecard from Redis and the alerts topic"
        built = await read(what, source.report(since_ms))
        owner = request.query.get("owner")
        if owner:
            try:
                built = built.for_owner(owner)
            except ConfigError as exc:
                return _html(pages.not_found_page(str(exc), now_ms=now_ms()), 404)
        return _html(pages.report_page(built, now_ms=now_ms()))

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Security headers on every answer; a store that does not answer is a 503 page
        that refreshes itself, not a traceback."""
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404:
                response = _html(
                    pages.not_found_page(f"Nothing at {request.path}.", now_ms=now_ms()), 404
                )
            else:
                response = exc
        except _Unavailable as exc:
            response = _html(pages.error_page(str(exc), now_ms=now_ms()), 503)
        except WatchkeeperError as exc:  # the broker is unreachable, a topic is missing...
            log.warning("ui: %s failed: %s", request.path, exc)
            response = _html(pages.error_page(str(exc), now_ms=now_ms()), 503)
        response.headers.update(_HEADERS)
        return response

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", fleet)
    app.router.add_get("/models/{model_id:.+}", model)
    app.router.add_get("/models", model)  # ?id=: ids a path cannot carry (".", "..")
    app.router.add_get("/alerts/{alert_id}", alert)
    app.router.add_get("/report", report)
    app.router.add_get("/healthz", healthz)
    return app


class _Unavailable(Exception):
    """Redis or the broker did not answer a page's read."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(settings: Settings, *, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM. Redis is checked first, so a wrong URL is a
    one-line error at start; a port in use is one too."""
    async with redis_session(settings) as redis:
        runner = web.AppRunner(
            build_app(RedisSource(settings, redis)), access_log=None, handle_signals=False
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise WatchkeeperError(f"cannot listen on {host}:{port}: {reason or exc}") from None
            bound = runner.addresses[0]
            shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
            print(f"watchkeeper ui ready: http://{shown}:{bound[1]}/", file=sys.stderr, flush=True)
            if not _loopback(host):
                print(
                    f"watchkeeper ui: listening on {host}, beyond this machine; the UI has "
                    "no login, so put it behind your proxy or VPN",
                    file=sys.stderr,
                    flush=True,
                )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await stop.wait()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        finally:
            await runner.cleanup()
    print("watchkeeper ui stopped", file=sys.stderr, flush=True)
