"""A TCP proxy a test can cut, black-hole and restore, to take a broker away without
touching it."""

from __future__ import annotations

import asyncio
import contextlib

from signup.testing.server import free_port


class _Link:
    """One client connection and its upstream; `swallow`: bytes read are dropped."""

    def __init__(self, writers: list[asyncio.StreamWriter], swallow: bool) -> None:
        self.writers = writers
        self.swallow = swallow


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._black_hole = False
        self.swallowed = 0  # bytes dropped by the black hole

    async def open(self) -> None:
        """Accept connections and forward them (new ones: a black hole ends here)."""
        self._black_hole = False
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, as a network outage does."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for link in list(self._links):
            for writer in link.writers:
                writer.transport.abort()
        self._links.clear()

    def black_hole(self) -> None:
        """Stop forwarding, both ways, without closing a socket: every open connection
        and every new one swallows what it reads, as a silent peer (a dead host, a lost
        NAT entry) does. `open()` forwards new connections again; the swallowed ones
        stay silent until the peers give them up (or `cut()`)."""
        self._black_hole = True
        for link in self._links:
            link.swallow = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._black_hole:
            link = _Link([writer], swallow=True)
            self._links.add(link)
            await self._pipe(link, reader, None)
            self._links.discard(link)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link([writer, up_writer], swallow=False)
        self._links.add(link)
        await asyncio.gather(
            self._pipe(link, reader, up_writer), self._pipe(link, up_reader, writer)
        )
        self._links.discard(link)

    async def _pipe(
        self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None
    ) -> None:
        with contextlib.suppress(Exception):
            while data := await src.read(65536):
                if link.swallow or dst is None:
                    self.swallowed += len(data)
                    continue
                dst.write(data)
                await dst.drain()
        # The peer closed its side: a black hole does not pass that on either.
        if dst is not None and not link.swallow:
            with contextlib.suppress(Exception):
                dst.transport.abort()
