"""The process's WebSocket loop: one thread and one selector hold every upgraded socket, and a jobs
thread does their database work, so an idle socket costs memory, not a thread.

Only the loop thread touches a socket or its protocol state. Other threads (gunicorn's, the bus
listeners, the jobs thread) hand it work with call_soon. The jobs thread runs what may wait (the
database, Redis, token checks) one job after another, and hands each result back to the loop; so
neither a slow database nor a burst of work ever stops the loop from answering pings and writing
events, and the loop never holds a pooled connection while sockets sit idle.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import selectors
import threading
import time
from typing import Callable, Protocol

from gatehouse.web import failure_fields

log = logging.getLogger(__name__)


class Held(Protocol):
    """What the loop drives: a connection with a wire (gatehouse.realtime.connection.Connection)."""

    wire: object

    def on_messages(self, messages: list) -> None: ...

    def on_timer(self) -> None: ...

    def ended(self) -> None: ...

    def fail(self, exc: Exception) -> None: ...


class Loop:
    TICK = 1.0  # the longest the selector sleeps; batches are flushed at least this often

    def __init__(self, after_each: Callable[[], None] = lambda: None):
        self._after_each = after_each
        self._selector = selectors.DefaultSelector()
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._waking = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._timers: list[tuple[float, int, Held]] = []
        self._due: dict[int, float] = {}  # id(conn) -> the one timer that counts for it
        self._order = itertools.count()
        self._dirty: dict[int, Held] = {}
        self._held: dict[int, Held] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.emptied = threading.Event()

    # ---- any thread ------------------------------------------------------------------------------

    def call_soon(self, fn: Callable, *args) -> None:
        self._calls.put((fn, args))
        if not self._waking:  # one write wakes the loop for everything queued before it drains
            self._waking = True
            try:
                os.write(self._wake_write, b"\0")
            except BlockingIOError:  # the pipe is full: the loop is awake already
                pass

    def adopt(self, conn: Held) -> None:
        self._ensure_running()
        self.call_soon(self._adopt, conn)

    def held(self) -> int:
        return len(self._held)

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gatehouse-ws-loop", daemon=True)
                self._thread.start()

    # ---- the loop thread -------------------------------------------------------------------------

    def schedule(self, conn: Held, delay: float) -> None:
        """conn.on_timer() in `delay` seconds (replacing the connection's earlier timer)."""
        due = time.monotonic() + max(0.0, delay)
        self._due[id(conn)] = due
        heapq.heappush(self._timers, (due, next(self._order), conn))

    def want_write(self, conn: Held) -> None:
        self._dirty[id(conn)] = conn

    def _adopt(self, conn: Held) -> None:
        self._held[id(conn)] = conn
        self.emptied.clear()
        self._selector.register(conn.wire.sock, selectors.EVENT_READ, conn)
        self.want_write(conn)

    def _run(self) -> None:
        while True:
            try:
                self._once()
            except Exception as exc:  # a bug must not silence every socket of the process
                log.error("realtime loop failed; going on", extra=failure_fields(exc))

    def _once(self) -> None:
        timeout = self.TICK
        if self._timers:
            timeout = min(timeout, max(0.0, self._timers[0][0] - time.monotonic()))
        for key, mask in self._selector.select(timeout):
            conn = key.data
            if conn is None:
                self._drain_wake()
            else:
                if mask & selectors.EVENT_READ:
                    self._guarded(conn, self._readable, conn)
                self.want_write(conn)
        self._run_calls()
        self._run_timers()
        self._after_each()
        self._flush()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

    def _run_calls(self) -> None:
        self._waking = False  # before draining: a call queued after this point writes to the pipe again
        while True:
            try:
                fn, args = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fn(*args)
            except Exception as exc:
                log.error("realtime loop call failed", extra=failure_fields(exc))

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            due, _, conn = heapq.heappop(self._timers)
            if self._due.get(id(conn)) != due or id(conn) not in self._held:
                continue  # replaced by a later schedule(), or the connection is gone
            del self._due[id(conn)]
            self._guarded(conn, conn.on_timer)
            self.want_write(conn)

    def _readable(self, conn: Held) -> None:
        messages = conn.wire.receive()
        if messages:
            conn.on_messages(messages)
        self.want_write(conn)

    def _guarded(self, conn: Held, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # the database failing, say: this connection ends, the others go on
            conn.fail(exc)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for key, conn in dirty.items():
            if key not in self._held:
                continue
            wire = conn.wire
            done = wire.flush()
            if wire.finished:
                self._forget(conn)
                continue
            self._selector.modify(wire.sock, selectors.EVENT_READ if done else
                                  selectors.EVENT_READ | selectors.EVENT_WRITE, conn)

    def _forget(self, conn: Held) -> None:
        # Unregistered before its descriptor is closed: the number may be reused at once.
        self._selector.unregister(conn.wire.sock)
        conn.wire.shut()
        del self._held[id(conn)]
        self._due.pop(id(conn), None)
        if not self._held:
            self.emptied.set()
        try:
            conn.ended()
        except Exception as exc:
            log.warning("realtime connection end failed", extra=failure_fields(exc))


class Jobs:
    """One thread that runs the connections' waiting work (database, Redis, token checks) in order,
    inside the app's context, and hands each result back to the loop as then(result, exception).
    Every job returns its pooled database connection before the next one starts."""

    def __init__(self, app, loop: Loop):
        self._app = app
        self._loop = loop
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable, *args, then: Callable | None = None) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gatehouse-ws-jobs", daemon=True)
                self._thread.start()
        self._queue.put((fn, args, then))

    def _run(self) -> None:
        from gatehouse.extensions import db

        while True:
            fn, args, then = self._queue.get()
            result = exc = None
            with self._app.app_context():
                try:
                    result = fn(*args)
                except Exception as error:
                    exc = error
                finally:
                    db.session.remove()
            if then is not None:
                self._loop.call_soon(then, result, exc)
            elif exc is not None:
                log.warning("realtime job failed", extra=failure_fields(exc))


class Batch:
    """Work gathered from any thread and run together on the jobs thread: whatever piled up while the
    previous run went on is the next run, so a burst (a reconnect storm opening thousands of sockets)
    costs a few statements instead of one each, and a lone item still runs at once."""

    def __init__(self, jobs: Jobs, run: Callable[[list], None], size: int):
        self._jobs = jobs
        self._run = run
        self._size = size
        self._items: list = []
        self._queued = False
        self._lock = threading.Lock()

    def add(self, item) -> None:
        with self._lock:
            self._items.append(item)
            if self._queued:
                return
            self._queued = True
        self._jobs.submit(self._drain)

    def _drain(self) -> None:
        from gatehouse.extensions import db

        with self._lock:
            items, self._items, self._queued = self._items, [], False
        for start in range(0, len(items), self._size):
            try:
                self._run(items[start:start + self._size])
            except Exception as exc:
                log.warning("realtime batch failed", extra=failure_fields(exc))
            finally:
                db.session.remove()
