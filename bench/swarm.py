"""Thousands of idle WebSocket clients in one asyncio loop (wsproto, sans-IO), for the realtime bench.

Each peer opens /ws with a bearer token, answers the server's pings, records the frames it is sent
and, when the server closes it with 1001 (a deploy), reconnects at once: the worst case of a
reconnect storm (real clients add jitter). The loop runs in its own thread; the bench drives it
through the blocking methods of Swarm.
"""
from __future__ import annotations

import asyncio
import json
import resource
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, CloseConnection, Ping, RejectConnection, RejectData, Request,
                            TextMessage)
from wsproto.extensions import PerMessageDeflate

GOING_AWAY = 1001


def raise_open_files() -> tuple[int, int]:
    """This process's soft RLIMIT_NOFILE raised to its hard limit; (soft before, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Peer:
    token: str
    user: int
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    versions: dict[int, float] = field(default_factory=dict)  # entity:updated version -> arrival time
    closes: list[int] = field(default_factory=list)
    pings: int = 0
    greeted: bool = False  # its first frame (the presence announcement) arrived: the open is done
    reconnected_at: float | None = None


class Swarm:
    def __init__(self, port: int, reconnect: bool = True):
        self.port = port
        self.reconnect = reconnect
        self.peers: list[Peer] = []
        self.refused: dict[int, int] = defaultdict(int)  # HTTP status of a refused upgrade -> count
        self.retries = 0  # connections refused or reset before an answer (retried after 50 ms)
        self.retry_kinds: dict[str, int] = defaultdict(int)
        self.going_away_at: float | None = None  # the first 1001 of a storm
        self._stop = False
        self._tasks: list[asyncio.Task] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-swarm", daemon=True)
        self._thread.start()

    def _call(self, coro, timeout: float = 600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ---- what the bench asks ---------------------------------------------------------------------

    def open(self, tokens: list[tuple[str, int]], at_once: int = 200) -> float:
        """Open one peer per (token, user) and wait until every one is open; the seconds it took."""
        return self._call(self._open(tokens, at_once))

    def greeted(self) -> int:
        return sum(1 for peer in self.peers if peer.greeted)

    def open_count(self) -> int:
        return sum(1 for peer in self.peers if peer.opened.is_set())

    def storm_done(self, since: int) -> bool:
        """Whether every peer that went away has its new connection open."""
        return all(peer.reconnected_at is not None for peer in self.peers[:since])

    def reset_storm(self) -> None:
        self.going_away_at = None
        for peer in self.peers:
            peer.reconnected_at = None

    def close(self) -> None:
        self._stop = True
        if self._tasks:
            async def cancel():
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

            self._call(cancel(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    # ---- the loop ------------------------------------------------------------------------------

    async def _open(self, tokens: list[tuple[str, int]], at_once: int) -> float:
        started = time.perf_counter()
        gate = asyncio.Semaphore(at_once)
        new = [Peer(token, user) for token, user in tokens]
        self.peers.extend(new)
        for peer in new:
            self._tasks.append(asyncio.ensure_future(self._live(peer, gate)))
        await asyncio.gather(*(peer.opened.wait() for peer in new))
        return time.perf_counter() - started

    async def _live(self, peer: Peer, gate: asyncio.Semaphore | None) -> None:
        """Hold the peer's connection; after a 1001, open a new one at once."""
        while not self._stop:
            if gate is not None:
                async with gate:
                    connection = await self._connect(peer)
                gate = None  # only the first fill is paced; a storm reconnects all at once
            else:
                connection = await self._connect(peer)
            if connection is None:
                return
            code = await self._serve(peer, *connection)
            peer.closes.append(code)
            if code != GOING_AWAY or not self.reconnect:
                return

    async def _connect(self, peer: Peer):
        while not self._stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError as exc:
                self.retry_kinds[type(exc).__name__] += 1
                self.retries += 1
                await asyncio.sleep(0.05)
                continue
            ws = WSConnection(ConnectionType.CLIENT)
            writer.write(ws.send(Request(host=f"127.0.0.1:{self.port}", target="/ws",
                                         extra_headers=[(b"authorization", f"Bearer {peer.token}".encode())],
                                         extensions=[PerMessageDeflate()])))
            try:
                status = await self._handshake(ws, reader)
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.retry_kinds[type(exc).__name__] += 1
                status = None
            if status == 101:
                if peer.opened.is_set():
                    peer.reconnected_at = time.perf_counter()
                peer.opened.set()
                return ws, reader, writer
            writer.close()
            if status is None:  # reset before any answer: the listener went away under it
                self.retry_kinds["eof"] += 1
                self.retries += 1
                await asyncio.sleep(0.05)
                continue
            self.refused[status] += 1
            return None
        return None

    @staticmethod
    async def _handshake(ws: WSConnection, reader: asyncio.StreamReader) -> int | None:
        while True:
            data = await reader.read(65536)
            if not data:
                return None
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    return 101
                if isinstance(event, (RejectConnection, RejectData)):
                    return getattr(event, "status_code", 0) or 0

    async def _serve(self, peer: Peer, ws: WSConnection, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> int:
        """Answer pings and record frames until the server closes; its close code (1006: no close frame)."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return 1006
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Ping):
                        peer.pings += 1
                        writer.write(ws.send(event.response()))
                    elif isinstance(event, TextMessage):
                        self._frame(peer, event.data)
                    elif isinstance(event, CloseConnection):
                        if event.code == GOING_AWAY and self.going_away_at is None:
                            self.going_away_at = time.perf_counter()
                        try:
                            writer.write(ws.send(event.response()))
                        except Exception:
                            pass
                        return event.code
        except (OSError, asyncio.CancelledError):
            return 1006
        finally:
            writer.close()

    @staticmethod
    def _frame(peer: Peer, text: str) -> None:
        peer.greeted = True
        frame = json.loads(text)
        if frame.get("event") == "entity:updated":
            peer.versions[frame["data"]["version"]] = time.perf_counter()
