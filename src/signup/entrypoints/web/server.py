"""The HTTP/1.1 protocol `signup serve` runs: uvicorn's httptools protocol with limits.

uvicorn reads a request's head without bound (a 120 MB header was read in full), keeps
a connection that never sends a request for ever (its keep-alive timer starts only after
a response), and answers malformed requests with a bare text/plain 400. This subclass:

- caps the request head (request line and headers) at `max_header_bytes` and the
  number of header fields at `max_headers`: past either, 431 and the connection closes.
  httptools gathers a header's value in full before calling `on_header`, so the bytes
  received while a head is incomplete are counted too: at most one read (<= 256 KiB)
  goes past the cap;
- gives a request `header_timeout` to arrive, counted from the connection's start (or,
  for later requests on a kept-alive connection, from their first read), like nginx's
  `client_header_timeout`: a connection that sent nothing is closed, one that sent part
  of a head is answered 408;
- holds at most `max_connections` connections. Past that, a new connection closes the
  connection idle longest (no request in flight: waiting for its first request, part-way
  through a head, or kept alive) if it has been idle `EVICTION_GRACE` seconds; else it
  takes one of `PROBE_RESERVE` further places, where only health probes are served
  (others get 503 with `Retry-After`); with those taken too, it closes the connection
  idle longest whatever its age, and when none is idle it is answered 503 at once.
  Oldest first, a flood's sockets go before the probe that came after them; the grace
  keeps a client that just connected from losing its place before its request arrives.
  uvicorn's `limit_concurrency` is not used: it answers `/healthz` 503 too (an
  orchestrator would restart a process that is merely busy);
- starts at most `START_PER_TURN` new requests a loop turn, probes first (`_Starts`);
- answers all of these (and malformed requests) as problem+json with the app's
  security headers (server_answers.py).

The hot path gains two counters a header, a flag a read and an ordered-dict entry a
request; a timer only for a connection's first request and for heads that come in pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import httptools
import structlog
from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from signup.entrypoints.web.server_answers import note, problem_answer
from signup.settings import Settings

log = structlog.get_logger(__name__)

# New requests started a loop turn (see _Starts).
START_PER_TURN = 16
# Connections past `max_connections` that may still ask /healthz or /readyz.
PROBE_RESERVE = 16
PROBE_PATHS = frozenset({b"/healthz", b"/readyz"})
PROBE_PATH_NAMES = frozenset(path.decode() for path in PROBE_PATHS)
# How long a connection must have been idle before a newcomer may take its place while
# the probe reserve is free (at most half the header timeout).
EVICTION_GRACE = 1.0
# Descriptors a web process needs besides its connections: the database files, the
# broker, logs, the listening socket; and one accept burst (up to uvicorn's listen
# backlog), whose connections over the cap are closed a loop turn after they came.
FD_HEADROOM = 256 + 2048


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 15.0
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )


def fit_file_limit(limits: ServerLimits) -> ServerLimits:
    """Raise this process's descriptor limit to hold `max_connections` (children inherit
    it), or lower `max_connections` to what the limit holds: running out of descriptors
    fails everything else too (the database, the broker, accepting the next probe)."""
    need = limits.max_connections + PROBE_RESERVE + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limits
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft >= need:
        return limits
    fitted = max(16, soft - PROBE_RESERVE - FD_HEADROOM)
    log.warning(
        "server.max_connections_lowered",
        wanted=limits.max_connections,
        max_connections=fitted,
        file_limit=soft,
    )
    return replace(limits, max_connections=fitted)


def configure(limits: ServerLimits) -> ServerLimits:
    """Set this process's limits; returns them as applied (see `fit_file_limit`)."""
    fitted = fit_file_limit(limits)
    LimitedHttpToolsProtocol.limits = fitted
    return fitted


# How long a connection answered 503 may keep sending (what it sends is dropped), and
# how many may at once: past that many, they are closed at once.
LINGER_SECONDS = 2.0
MAX_LINGERING = 64
_lingering = [0]


class _Discard:
    """The parser of a connection that has been answered: what comes is dropped."""

    def feed_data(self, data: bytes) -> None:
        pass


_DISCARD = _Discard()


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; `data_received` answers."""


# Per server (one a process in `signup serve`): its idle connections, longest idle first,
# with the time each became idle.
_idle_by_server: dict[int, OrderedDict[LimitedHttpToolsProtocol, float]] = {}


class _Starts:
    """Starts at most `START_PER_TURN` requests a loop turn; the rest wait, in order.

    A burst of a thousand sign-ups arrives in one turn; started together, their first
    steps ran in the next turn, one after the other, and held everything else (a probe
    of `/healthz` too) for ~0.7 s. Spread over turns, other work (and every request
    started earlier) gets the loop between each 16, and probes stay well under the 100 ms
    that tests/e2e/test_server_limits.py asks of them. Probes are started at once.
    Requests in flight are not limited (a sign-up waiting for Auth0 costs the loop
    nothing); only their starts are paced.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.this_turn = 0
        self.waiting: deque[tuple[HttpToolsProtocol, RequestResponseCycle, ASGI3Application]]
        self.waiting = deque()
        self._turn_marked = False

    def mark_turn(self) -> None:
        if not self._turn_marked:
            self._turn_marked = True
            self._loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_marked = False
        self.this_turn = 0
        waiting = self.waiting
        while waiting and self.this_turn < START_PER_TURN:
            protocol, cycle, app = waiting.popleft()
            if cycle.disconnected:
                continue
            self.this_turn += 1
            HttpToolsProtocol._start_asgi_task(protocol, cycle, app)
        if self.this_turn or waiting:
            self.mark_turn()


_starts_by_server: dict[int, _Starts] = {}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    # Set by `configure` (`signup serve`); a worker process started by uvicorn's
    # supervisor reads its own from the environment it inherited.
    limits: ClassVar[ServerLimits | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = type(self).limits or configure(ServerLimits.from_settings(Settings()))
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._header_timeout = limits.header_timeout
        self._body_timeout = limits.body_timeout
        self._max_connections = limits.max_connections
        self._grace = min(EVICTION_GRACE, limits.header_timeout / 2)
        self._idle = _idle_by_server.setdefault(id(server_state), OrderedDict())
        self._starts = _starts_by_server.get(id(server_state)) or _starts_by_server.setdefault(
            id(server_state), _Starts(self.loop)
        )
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = False  # part of a request head has come, not all
        self._in_body = False  # the head has come, the body not all of it
        self._head_bytes = 0  # by the parser's callbacks: URL, names and values
        self._raw_bytes = 0  # by reads that ended with the head still incomplete
        self._header_count = 0
        self._refusal: str | None = None
        self._probe_only = False
        self._lingers = False

    # ---- connections ------------------------------------------------------------

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        now = self.loop.time()
        if len(self.connections) > self._max_connections and not self._make_room(now):
            self._answer("busy")
            return
        self._idle[self] = now
        self._header_timer = self.loop.call_later(self._header_timeout, self._header_timed_out)

    def _make_room(self, now: float) -> bool:
        """Over the cap: close an idle connection, or take a probe's place; False: full."""
        idle = self._idle
        oldest = next(iter(idle.items()), None)
        if oldest is not None and now - oldest[1] >= self._grace:
            oldest[0]._evict()
        elif len(self.connections) <= self._max_connections + PROBE_RESERVE:
            self._probe_only = True
        elif oldest is not None:
            oldest[0]._evict()
            self._probe_only = True
        else:
            return False
        return True

    def _evict(self) -> None:
        if not self.transport.is_closing():  # else closed already, by a timer
            note("evicted")
        self._idle.pop(self, None)
        # Out of the count now: its `connection_lost` comes a loop turn later.
        self.connections.discard(self)
        self._cancel_header_timer()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle.pop(self, None)
        self._cancel_header_timer()
        if self._lingers:
            _lingering[0] -= 1
            self._lingers = False
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        timer = self._header_timer
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._awaiting_headers and (cycle is None or cycle.response_complete):
            self._answer("header-timeout")
        else:  # nothing of a request came (or one is still being answered): no answer
            note("idle-timeout")
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._header_timer = None
        cycle = self.cycle
        if not self._in_body or self.transport.is_closing():
            return
        self._in_body = False
        if cycle is not None and not cycle.response_started:
            self._answer("body-timeout")
        else:
            note("body-timeout")
            self.transport.close()

    def _answer(self, reason: str) -> None:
        note(reason)
        self._idle.pop(self, None)
        self._awaiting_headers = False
        self._cancel_header_timer()
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(problem_answer(reason, self.server_state.default_headers))
        if reason == "busy" and _lingering[0] < MAX_LINGERING and transport.can_write_eof():
            # A client still sending its body would get a reset, not the 503 that tells
            # it when to come back, if the socket closed on unread bytes: send, stop
            # writing, and drop what it still sends for a moment (or until it closes).
            transport.write_eof()
            self.parser = _DISCARD  # type: ignore[assignment]
            self.connections.discard(self)  # not one of the connections served
            _lingering[0] += 1
            self._lingers = True
            self._header_timer = self.loop.call_later(LINGER_SECONDS, transport.close)
            return
        transport.close()

    def send_400_response(self, msg: str) -> None:
        self._answer("malformed")

    # ---- reading ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(self._refusal or "malformed")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._awaiting_headers:
            # All of this read is (part of) an unfinished head, which httptools is
            # gathering where `on_header` cannot see it yet.
            self._raw_bytes += len(data)
            if self._raw_bytes > self._max_header_bytes:
                self._answer("header-too-large")
            elif self._header_timer is None:
                # Armed only for a head that did not come in one read: most come whole,
                # and a timer a request was the largest part of this class's cost.
                self._header_timer = self.loop.call_later(
                    self._header_timeout, self._header_timed_out
                )
        elif self._in_body and self._header_timer is None:
            # Likewise only for a body that did not come with its head: a slow-body
            # client must not hold one of the connections for ever.
            self._header_timer = self.loop.call_later(self._body_timeout, self._body_timed_out)

    def _refuse(self, reason: str) -> None:
        self._refusal = reason
        raise _Refused(reason)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._head_bytes = self._raw_bytes = self._header_count = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._max_header_bytes:
            self._refuse("header-too-large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value)
        if self._header_count > self._max_headers or self._head_bytes > self._max_header_bytes:
            self._refuse("header-too-large")
        # uvicorn's, inline: a call less per header.
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._idle.pop(self, None)
        self._awaiting_headers = False
        self._in_body = True
        self._cancel_header_timer()
        if self._probe_only:
            if self.url.partition(b"?")[0] not in PROBE_PATHS:
                self._refuse("busy")
            super().on_headers_complete()
            # A reserve place answers one probe and is given back.
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._header_timer is not None and not self._awaiting_headers:
            self._cancel_header_timer()
        super().on_message_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        starts = self._starts
        if starts.this_turn >= START_PER_TURN or starts.waiting:
            if cycle.scope["path"] not in PROBE_PATH_NAMES:
                starts.waiting.append((self, cycle, app))
                starts.mark_turn()
                return
        else:
            starts.mark_turn()
        starts.this_turn += 1
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle unless a pipelined request has started in its place.
        if self.cycle.response_complete and not self.transport.is_closing():
            self._idle[self] = self.loop.time()
