"""GET /auth/me on keep-alive connections with every request's start and latency kept, in a process of
its own (its own GIL): the timeline of a reconnect storm, second by second. wrk gives percentiles of
a whole run only, and drops requests still in flight when it stops."""
from __future__ import annotations

import asyncio
import multiprocessing
import time


async def _client(port: int, token: str, stop: multiprocessing.Event, answered: multiprocessing.Event,
                  samples: list) -> None:
    request = (f"GET /auth/me HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    reader = writer = None
    while not stop.is_set():
        started = time.time()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if b"connection: close" in head.lower():
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            status = 0  # the connection broke (a worker restarting closes its kept-alive connections)
            if writer is not None:
                writer.close()
            writer = None
        samples.append((started, time.time() - started, status))
        if status:
            answered.set()


def _run(port: int, token: str, connections: int, stop, answered, results) -> None:
    samples: list = []

    async def main():
        await asyncio.gather(*(_client(port, token, stop, answered, samples) for _ in range(connections)))

    asyncio.run(main())
    results.put(samples)


class Timeline:
    """Start it, do something to the server, stop it: every request as (start epoch, seconds, status)."""

    def __init__(self, port: int, token: str, connections: int = 16):
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._answered = context.Event()
        self._results = context.Queue()
        self._process = context.Process(target=_run, daemon=True,
                                        args=(port, token, connections, self._stop, self._answered, self._results))

    def start(self, timeout: float = 30) -> None:
        """Once its first request is answered (a spawned interpreter takes a while to begin)."""
        self._process.start()
        if not self._answered.wait(timeout):
            raise RuntimeError("the timeline's client got no answer")

    def stop(self) -> list[tuple[float, float, int]]:
        self._stop.set()
        samples = self._results.get(timeout=60)
        self._process.join(10)
        return samples


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]
