"""The realtime hub of one application: registry, bridge, presence, seats, and the loop that holds
the sockets. A handshake is served in its gunicorn thread up to the upgrade and the presence
announcement; then the socket is handed to the loop and the thread goes back to HTTP."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from flask import Flask, current_app

from gatehouse.clock import now
from gatehouse.config import MAX_BODY_BYTES
from gatehouse.extensions import db
from gatehouse.realtime.bridge import RedisBridge, SiblingBridge, sibling_directory
from gatehouse.realtime.bus import bus
from gatehouse.realtime import connection
from gatehouse.realtime.connection import CLOSE_INTERNAL_ERROR, CLOSE_TRY_AGAIN_LATER, Connection, Timing
from gatehouse.realtime.loop import Batch, Jobs, Loop
from gatehouse.realtime.presence import Presence, Roster
from gatehouse.realtime.registry import Registry
from gatehouse.realtime.seats import seats
from gatehouse.realtime.wire import Wire
from gatehouse.web import failure_fields

log = logging.getLogger(__name__)

EXTENSION = "gatehouse.realtime"
BATCH = 500  # connections per statement of a batched re-check, heartbeat or release
MAX_PENDING = 1 << 20  # bytes of unsent frames a client may leave unread before it is dropped


@dataclass(frozen=True)
class SessionChecks:
    """What the hub asks of the sessions it holds, handed in by whoever installs it (create_app, from
    gatehouse.services.sessions), so that the realtime layer never reaches up into the use cases."""

    # The role of each of these session ids that is live with an active account (others left out).
    live_roles: Callable[[list[str], datetime], dict[str, str]]
    # session:renew: (session id, role, expiry epoch) of a fresh access token; TokenRevoked etc. otherwise.
    renewal: Callable[[str, datetime], tuple[str, str, int]]


class Hub:
    def __init__(self, app: Flask, checks: SessionChecks, redis=None):
        self.checks = checks
        config = app.config
        self.registry = Registry(capacity=config["WS_CONNECTIONS"])
        self.bridge = (RedisBridge(redis, self.dispatch) if redis is not None
                       else SiblingBridge(sibling_directory(config["SQLALCHEMY_DATABASE_URI"]), self.dispatch))
        ping = config["WS_PING_SECONDS"]
        self.presence = Presence(Roster(self.registry, redis, lapse_seconds=3 * ping), config["WS_IDLE_SECONDS"])
        self.seats = seats(config["WS_CONNECTIONS_PER_USER"])
        self.timing = Timing(expiry_warning=timedelta(seconds=config["WS_EXPIRY_WARNING_SECONDS"]),
                             recheck=timedelta(seconds=config["WS_RECHECK_SECONDS"]),
                             heartbeat=timedelta(seconds=ping),
                             active_interval=timedelta(seconds=config["WS_ACTIVE_SECONDS"]),
                             frames_per_minute=config["WS_FRAMES_PER_MINUTE"])
        self.loop = Loop(after_each=self._flush_periodic)
        self.jobs = Jobs(app, self.loop)
        self._opened = Batch(self.jobs, self._open, BATCH)
        self._closed = Batch(self.jobs, self._close, BATCH)
        # Heartbeats and re-checks come due one connection at a time, 367 a second for 5,000 sockets:
        # gathered on the loop thread and sent once a second, a few statements a second in all.
        self._rechecks: list[Connection] = []
        self._beats: list[Connection] = []
        self._next_flush = 0.0

    # ---- the handshake's thread ------------------------------------------------------------------

    def serve(self, ws, who, expires_at: datetime, seat: str) -> None:
        """Take over an accepted socket of `who` (its user_id, session_id and role) and return: the loop
        holds it from now on, and the jobs thread announces the user's presence (its first frame). The handshake's queries are over: their
        database connection goes back to the pool first."""
        db.session.remove()
        wire = Wire.take_over(ws, MAX_BODY_BYTES, MAX_PENDING)
        conn = Connection(wire, who.user_id, who.session_id, who.role == "admin", expires_at, self, self.timing, seat)
        self.bridge.ensure_listening()
        conn.held = self.registry.add(conn)  # subscribed before its presence is announced
        self.loop.adopt(conn)
        if conn.held:
            self._opened.add(conn)
        else:
            self.loop.call_soon(conn.end, CLOSE_TRY_AGAIN_LATER, "too many connections")

    def _open(self, conns: list[Connection]) -> None:
        """Jobs thread: the opened connections into the roster, and each one's announcement."""
        try:
            last_active = self.presence.opened([(conn.user_id, conn.id) for conn in conns], now())
        except Exception as exc:  # the database failing, say: the clients reconnect later
            log.error("websocket connections failed", extra=failure_fields(exc))
            for conn in conns:
                self.loop.call_soon(conn.end, CLOSE_INTERNAL_ERROR, "internal error")
            return
        for conn in conns:
            self.loop.call_soon(conn.ready, last_active.get(conn.user_id))

    def _close(self, conns: list[Connection]) -> None:
        """Jobs thread: closed connections out of the roster; a user left with none is offline."""
        self.presence.closed([(conn.user_id, conn.id) for conn in conns], now())

    def dispatch(self, target: str, event: str, data: dict) -> None:
        """One bus event, from this process or another, to the connections this process holds."""
        receivers = self.registry.receivers(target, event, data)
        if event == "session:revoked":
            connection.revoke(self.loop, receivers)
        else:
            connection.deliver(self.loop, receivers, event, data)

    # ---- the loop thread -------------------------------------------------------------------------

    def heartbeat(self, conn: Connection) -> None:
        self._beats.append(conn)

    def recheck(self, conn: Connection) -> None:
        self._rechecks.append(conn)

    def release(self, conn: Connection) -> None:
        """A connection ended: its seat is free at once; the registry forgets it, and presence follows."""
        if conn.seat is not None:
            self.seats.give_back(conn.seat)
            conn.seat = None
        if conn.held:
            conn.held = False
            self.registry.remove(conn)
            self._closed.add(conn)

    def _flush_periodic(self) -> None:
        if time.monotonic() < self._next_flush:
            return
        self._next_flush = time.monotonic() + 1.0
        moment = now()
        for start in range(0, len(self._rechecks), BATCH):
            batch = self._rechecks[start:start + BATCH]
            self.jobs.submit(self.checks.live_roles, [conn.session_id for conn in batch], moment,
                             then=lambda roles, exc, batch=batch: self._checked(batch, roles, exc))
        for start in range(0, len(self._beats), BATCH):
            held = [(conn.user_id, conn.id) for conn in self._beats[start:start + BATCH] if conn.held]
            self.jobs.submit(self.presence.roster.hold, held, moment)
        self._rechecks, self._beats = [], []

    @staticmethod
    def _checked(batch: list[Connection], roles: dict[str, str] | None, exc: Exception | None) -> None:
        if exc is not None:  # the database did not answer: the next re-check tries again
            log.warning("websocket session re-check failed", extra=failure_fields(exc))
            return
        for conn in batch:
            conn.checked(roles.get(conn.session_id))

    # ---- the jobs thread -------------------------------------------------------------------------

    def renewal(self, access_token: str, moment: datetime) -> tuple[str, str, int]:
        """session:renew: the token's session, its account's role and the token's expiry (epoch)."""
        return self.checks.renewal(access_token, moment)

    # ---- shutting down ---------------------------------------------------------------------------

    def go_away(self) -> None:
        """The process is stopping (a deploy): every socket closes with 1001. Their seats are given
        back first, so that clients reconnecting to the new processes are counted afresh. Safe in a
        signal handler: it only hands the work to the loop."""
        self.loop.call_soon(self._go_away)

    def _go_away(self) -> None:
        self.seats.give_back_all()
        for conn in self.registry.all():
            conn.seat = None
            conn.go_away()

    def drain(self, timeout: float) -> bool:
        """Wait until every socket has closed (the clients answered the 1001), at most `timeout` s."""
        if self.loop.held() == 0:
            return True
        return self.loop.emptied.wait(timeout)


def install(app: Flask, checks: SessionChecks) -> None:
    """Give the app its hub and route every bus event to it (through Redis when configured)."""
    hub = Hub(app, checks, app.extensions.get("gatehouse.redis"))
    app.extensions[EXTENSION] = hub
    # simple-websocket answers the upgrade; the loop then drives the socket, so it starts no thread
    # of its own (and its pings, replaced by the loop's, are off).
    app.config["SOCK_SERVER_OPTIONS"] = {"thread_class": _NoThread, "max_message_size": MAX_BODY_BYTES}
    with app.app_context():
        bus().subscribe(hub.bridge.forward)


class _NoThread:
    """simple-websocket's reader thread, not started: the process's loop reads every socket."""

    def __init__(self, target=None, **_):
        self.name = "gatehouse-ws-handshake"

    def start(self) -> None:
        pass


def hub() -> Hub:
    return current_app.extensions[EXTENSION]
