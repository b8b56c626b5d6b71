"""One WebSocket connection: its frames in and out, its credential's lifetime, its session's liveness.

Driven by the process's loop (gatehouse.realtime.loop): every method below runs on the loop thread,
except deliver, revoke and go_away, which any thread may call (they hand the work to the loop).
What needs the database (presence writes, token checks, the periodic session check) runs on the
jobs thread; while such a job of this connection runs, its later frames wait, so a client sees the
answers to its frames in the order it sent them.
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from gatehouse import errors, metrics
from gatehouse.clock import iso_z
from gatehouse.clock import now as clock_now
from gatehouse.models.types import new_id
from gatehouse.realtime.wire import CLOSE_WAIT_SECONDS
from gatehouse.web import failure_fields

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_REVOKED = 4401
# The close reason of a deploy: every client gets it at once, so they must not all come back at once.
GOING_AWAY_REASON = "server restarting; reconnect after a random delay of a few seconds"


@dataclass(frozen=True)
class Timing:
    expiry_warning: timedelta
    recheck: timedelta
    heartbeat: timedelta  # the ping interval; each ping also renews the connection in the presence roster
    active_interval: timedelta = timedelta(seconds=15)  # at most one presence write per connection per this
    frames_per_minute: int = 120  # client frames beyond this in any minute close the connection


def _spread(interval: timedelta) -> timedelta:
    """A first wait between half and all of `interval`: sockets opened together (a reconnect storm)
    then ping and re-check spread over the interval instead of all in the same second."""
    return interval * random.uniform(0.5, 1.0)


def frame(event: str, data: dict) -> str:
    return json.dumps({"event": event, "data": data}, separators=(",", ":"))


def deliver(loop, conns: list, event: str, data: dict) -> None:
    """A bus event to these connections (any thread): encoded once, handed to the loop in one call."""
    if conns:
        loop.call_soon(_deliver, conns, event, frame(event, data))


def revoke(loop, conns: list) -> None:
    """Their session was revoked (any thread): `session:revoked`, then close 4401."""
    if conns:
        loop.call_soon(_revoke, conns)


def _deliver(conns: list, event: str, text: str) -> None:
    for conn in conns:
        conn._send_text(event, text)


def _revoke(conns: list) -> None:
    for conn in conns:
        conn._end_revoked()


class Connection:
    def __init__(self, wire, user_id: str, session_id: str, admin: bool, expires_at: datetime, hub, timing: Timing,
                 seat=None):
        self.id = new_id()
        self.wire = wire
        self.user_id = user_id
        self.session_id = session_id
        self.admin = admin
        self.expires_at = expires_at
        self.hub = hub
        self.timing = timing
        self.seat = seat
        self.held = False  # in the registry (the process had room for it)
        self._loop = hub.loop
        self._busy = True  # a job of this connection runs (first: the handshake thread announcing presence)
        self._inbox: deque = deque()
        self._ending = False
        self._warned = False
        self._frames: deque[datetime] = deque()  # arrival times of the client's frames in the last minute
        self._presence_written: datetime | None = None
        self._settling = False
        now = clock_now()
        self._beat_at = now + _spread(timing.heartbeat)
        self._recheck_at = now + _spread(timing.recheck)
        self._settle_at: datetime | None = None

    # ---- any thread ------------------------------------------------------------------------------

    def go_away(self) -> None:
        self._loop.call_soon(self.end, CLOSE_GOING_AWAY, GOING_AWAY_REASON)

    # ---- the loop thread -------------------------------------------------------------------------

    def ready(self, last_active: datetime | None) -> None:
        """The handshake thread has announced the user's presence: frames and timers may run."""
        self._settle_at = self._settle_after(last_active, clock_now())
        self._done()

    def send(self, event: str, data: dict) -> None:
        self._send_text(event, frame(event, data))

    def _send_text(self, event: str, text: str) -> None:
        if self._ending or not self.wire.open:
            return
        self.wire.send_text(text)
        metrics.ws_events.labels(event).inc()
        self._loop.want_write(self)

    def error(self, code: str, detail: str) -> None:
        self.send("error", {"code": code, "detail": detail})

    def end(self, code: int, reason: str, wait: bool = True) -> None:
        if not self._ending:
            self._ending = True
            self._inbox.clear()
            self.wire.close(code, reason, wait)
            self._loop.want_write(self)
            self._loop.schedule(self, CLOSE_WAIT_SECONDS)  # then cut off, if the peer never answers

    def _end_revoked(self) -> None:
        if not self._ending:
            self.send("session:revoked", {})
            self.end(CLOSE_REVOKED, "session revoked")

    def fail(self, exc: Exception) -> None:
        log.error("websocket connection failed", extra=failure_fields(exc))
        self.end(CLOSE_INTERNAL_ERROR, "internal error")

    def ended(self) -> None:
        """The socket is closed (by either side): forget the connection everywhere."""
        self._ending = True
        self.hub.release(self)

    # ---- timers ----------------------------------------------------------------------------------

    def on_timer(self) -> None:
        now = clock_now()
        wire = self.wire
        if wire.closing_since is not None:
            if wire.overdue(time.monotonic()):
                wire.finish()
            else:
                self._loop.schedule(self, 1.0)
            return
        if now >= self.expires_at:
            return self._end_revoked()
        if not self._warned and now >= self.expires_at - self.timing.expiry_warning:
            self._warned = True
            self.send("token:expiring", {"expiresAt": iso_z(self.expires_at)})
        if now >= self._beat_at:
            self._beat_at = now + self.timing.heartbeat
            if not wire.ping():  # the last ping went unanswered: the peer is gone
                return self.end(CLOSE_POLICY_VIOLATION, "Ping/Pong timeout", wait=False)
            self.hub.heartbeat(self)
        if now >= self._recheck_at:
            # The hub sends re-checks once a second: due a second early, each stays within the interval.
            recheck = self.timing.recheck
            self._recheck_at = now + max(recheck / 2, recheck - timedelta(seconds=1))
            self.hub.recheck(self)
        if self._settle_at is not None and now >= self._settle_at and not self._settling:
            self._settling = True
            self.hub.jobs.submit(self.hub.presence.settle, self.user_id, now, then=self._settled)
        self._schedule(now)

    def _schedule(self, now: datetime) -> None:
        deadlines = [self.expires_at, self._beat_at, self._recheck_at]
        if not self._warned:
            deadlines.append(self.expires_at - self.timing.expiry_warning)
        if self._settle_at is not None and not self._settling:
            deadlines.append(self._settle_at)
        self._loop.schedule(self, (min(deadlines) - now).total_seconds())

    def _settled(self, last_active, exc=None) -> None:
        self._settling = False
        if exc is not None:
            log.warning("presence not settled", extra=failure_fields(exc))
            last_active = None
        now = clock_now()
        self._settle_at = self._settle_after(last_active, now)
        if not self._ending:
            self._schedule(now)

    def _settle_after(self, last_active: datetime | None, now: datetime) -> datetime | None:
        """When this connection next looks whether the user went idle (None: already idle)."""
        idle = self.hub.presence.idle
        if last_active is None or now - last_active >= idle:
            return None
        return last_active + idle

    def checked(self, role: str | None) -> None:
        """The periodic re-check's answer: the account's role now, None when the session is no longer live.
        A demoted admin stops receiving what only admins receive, a promoted one starts (CONTRACT §6)."""
        if self._ending:
            return
        if role is None:
            return self._end_revoked()
        self._rights(role == "admin")

    def _rights(self, admin: bool) -> None:
        if admin != self.admin and self.held:
            self.admin = admin
            self.hub.registry.set_admin(self, admin)

    # ---- frames ----------------------------------------------------------------------------------

    def on_messages(self, messages: list) -> None:
        for message in messages:
            if self._ending:
                return
            self._count_frame(clock_now())
            if self._ending:
                return
            if self._busy:
                self._inbox.append(message)
            else:
                self.handle(message)

    def _count_frame(self, now: datetime) -> None:
        frames = self._frames
        frames.append(now)
        while frames and now - frames[0] >= timedelta(minutes=1):
            frames.popleft()
        if len(frames) > self.timing.frames_per_minute:
            # Each frame would cost work: a client that floods is closed.
            self.end(CLOSE_POLICY_VIOLATION, "too many messages")

    def _done(self, *_) -> None:
        """This connection's job finished: the frames that waited for it run now, in order."""
        self._busy = False
        while self._inbox and not self._busy and not self._ending:
            self.handle(self._inbox.popleft())
        if not self._ending:
            self._schedule(clock_now())

    def _job(self, fn, *args, then=None) -> None:
        self._busy = True

        def finished(result=None, exc=None):
            if exc is not None and not isinstance(exc, errors.GatehouseError):
                self.fail(exc)
            elif then is not None and not self._ending:
                then(result, exc)
            self._done()

        self.hub.jobs.submit(fn, *args, then=finished)

    def handle(self, frame: str | bytes) -> None:
        """A client frame. Anything malformed gets an `error` frame and the connection stays open."""
        try:
            message = json.loads(frame)
            event, data = message["event"], message.get("data") or {}
            if not isinstance(event, str) or not isinstance(data, dict):
                raise ValueError
        except (ValueError, TypeError, KeyError):
            return self.error("bad_request", 'Frames are JSON: {"event": "<name>", "data": {...}}.')
        if event == "presence:active":
            moment = clock_now()
            self._settle_at = moment + self.hub.presence.idle
            # Each write is a database update and a fan-out: one per active_interval per connection,
            # the frames between only keep this connection's own idle timer going.
            if self._presence_written is None or moment - self._presence_written >= self.timing.active_interval:
                self._presence_written = moment
                self._job(self.hub.presence.active, self.user_id, self.session_id, moment)
            return None
        if event == "session:renew":
            return self._renew(data.get("accessToken"))
        return self.error("bad_request", f"Unknown event {event!r}.")

    def _renew(self, token) -> None:
        """Swap onto a fresh access token of this same session. A token that is invalid, expired or of
        another session is refused with an `error` frame; the connection keeps its current token."""
        if not isinstance(token, str) or not token:
            return self.error("token_invalid", "session:renew needs {\"accessToken\": \"...\"}.")
        self._job(self.hub.renewal, token, clock_now(), then=self._renewed)

    def _renewed(self, renewal, exc) -> None:
        if exc is not None:
            return self.error(exc.code, exc.detail)
        session_id, role, expires = renewal
        if session_id != self.session_id:
            return self.error("token_invalid", "The access token belongs to another session.")
        self._rights(role == "admin")
        self.expires_at = datetime.fromtimestamp(expires, timezone.utc)
        self._warned = False
