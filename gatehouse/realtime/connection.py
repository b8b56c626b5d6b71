"""One WebSocket connection: its frames in and out, its credential's lifetime, its session's liveness.

Runs in the thread that accepted the socket. Other threads (the bus, the Redis listener) only queue
frames for it and wake it, so a slow client never holds up whoever published the event.
"""
from __future__ import annotations

import json
import logging
import queue
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from simple_websocket import ConnectionClosed

from gatehouse import errors
from gatehouse.clock import iso_z
from gatehouse.clock import now as clock_now
from gatehouse.extensions import db
from gatehouse.models.types import new_id
from gatehouse.web import failure_fields

log = logging.getLogger(__name__)

CLOSE_REVOKED = 4401
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
_REVOKE = object()
_GOING_AWAY = object()


@dataclass(frozen=True)
class Timing:
    expiry_warning: timedelta
    recheck: timedelta
    heartbeat: timedelta  # how often the connection renews its place in the presence roster
    active_interval: timedelta = timedelta(seconds=15)  # at most one presence write per connection per this
    frames_per_minute: int = 120  # client frames beyond this in any minute close the connection


class Revoked(Exception):
    """The connection's session or credential is no longer valid."""


class GoingAway(Exception):
    """The process is shutting down; the client reconnects elsewhere."""


class Flooding(Exception):
    """The client sends more frames than WS_FRAMES_PER_MINUTE; each would cost work, so it is closed."""


class Connection:
    def __init__(self, ws, user_id: str, session_id: str, admin: bool, expires_at: datetime, hub, timing: Timing):
        self.id = new_id()
        self.ws = ws
        self.user_id = user_id
        self.session_id = session_id
        self.admin = admin
        self.expires_at = expires_at
        self.hub = hub
        self.timing = timing
        self._outgoing: queue.SimpleQueue = queue.SimpleQueue()
        # simple-websocket sets this event whenever a frame arrives or the socket closes; setting it
        # after queuing a frame wakes the loop for outgoing frames too.
        self._wake = ws.event
        self._warned = False
        self._frames: deque[datetime] = deque()  # arrival times of the client's frames in the last minute
        self._presence_written: datetime | None = None

    # ---- called from other threads -------------------------------------------------------------

    def deliver(self, event: str, data: dict) -> None:
        self._outgoing.put((event, data))
        self._wake.set()

    def revoke(self) -> None:
        self._outgoing.put(_REVOKE)
        self._wake.set()

    def go_away(self) -> None:
        self._outgoing.put(_GOING_AWAY)
        self._wake.set()

    # ---- the connection's own thread -----------------------------------------------------------

    def run(self) -> None:
        try:
            self._serve()
        except Revoked:
            self._end_revoked()
        except GoingAway:
            self._close(CLOSE_GOING_AWAY, "server shutting down")
        except Flooding:
            self._close(CLOSE_POLICY_VIOLATION, "too many messages")
        except ConnectionClosed:
            pass
        except Exception as exc:  # the database failing, say: the client reconnects later
            log.error("websocket connection failed", extra=failure_fields(exc))
            self._close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            db.session.remove()

    def _serve(self) -> None:
        presence = self.hub.presence
        now = clock_now()
        last_active = presence.opened(self.user_id, self.id, now)
        next_recheck = now + self.timing.recheck
        next_heartbeat = now + self.timing.heartbeat
        next_settle = self._settle_at(last_active, now)
        while True:
            now = clock_now()
            if now >= self.expires_at:
                raise Revoked()
            if not self._warned and now >= self.expires_at - self.timing.expiry_warning:
                self._warned = True
                self.send("token:expiring", {"expiresAt": iso_z(self.expires_at)})
            if now >= next_recheck:
                self._rights(self.hub.check_live(self.session_id, now))
                next_recheck = now + self.timing.recheck
            if now >= next_heartbeat:
                presence.roster.hold(self.user_id, self.id, now)
                next_heartbeat = now + self.timing.heartbeat
            if next_settle is not None and now >= next_settle:
                next_settle = self._settle_at(presence.settle(self.user_id, now), now)
            deadlines = [self.expires_at, next_recheck, next_heartbeat]
            if not self._warned:
                deadlines.append(self.expires_at - self.timing.expiry_warning)
            if next_settle is not None:
                deadlines.append(next_settle)
            self._wake.wait(max(0.0, (min(deadlines) - clock_now()).total_seconds()))
            self._wake.clear()
            while (frame := self.ws.receive(timeout=0)) is not None:
                if self.handle(frame):
                    next_settle = clock_now() + presence.idle
            self._flush()

    def _rights(self, admin: bool) -> None:
        """Take the account's rights as the session check just read them (CONTRACT §6): a demoted
        admin stops receiving what only admins receive, a promoted one starts."""
        if admin != self.admin:
            self.admin = admin
            self.hub.registry.set_admin(self, admin)

    def _count_frame(self, now: datetime) -> None:
        frames = self._frames
        frames.append(now)
        while frames and now - frames[0] >= timedelta(minutes=1):
            frames.popleft()
        if len(frames) > self.timing.frames_per_minute:
            raise Flooding()

    def _settle_at(self, last_active: datetime | None, now: datetime) -> datetime | None:
        """When this connection next looks whether the user went idle (None: already idle)."""
        if last_active is None or now - last_active >= self.hub.presence.idle:
            return None
        return last_active + self.hub.presence.idle

    def _flush(self) -> None:
        while True:
            try:
                item = self._outgoing.get_nowait()
            except queue.Empty:
                return
            if item is _REVOKE:
                raise Revoked()
            if item is _GOING_AWAY:
                raise GoingAway()
            self.send(*item)

    def _end_revoked(self) -> None:
        try:
            self.send("session:revoked", {})
        except ConnectionClosed:
            return
        self._close(CLOSE_REVOKED, "session revoked")

    def _close(self, code: int, reason: str) -> None:
        try:
            self.ws.close(code, reason)
        except ConnectionClosed:
            pass

    def send(self, event: str, data: dict) -> None:
        self.ws.send(json.dumps({"event": event, "data": data}, separators=(",", ":")))

    def error(self, code: str, detail: str) -> None:
        self.send("error", {"code": code, "detail": detail})

    def handle(self, frame: str | bytes) -> bool:
        """A client frame; True when it marked the user active. Anything malformed gets an `error`
        frame and the connection stays open; more than WS_FRAMES_PER_MINUTE frames close it."""
        self._count_frame(clock_now())
        try:
            message = json.loads(frame)
            event, data = message["event"], message.get("data") or {}
            if not isinstance(event, str) or not isinstance(data, dict):
                raise ValueError
        except (ValueError, TypeError, KeyError):
            self.error("bad_request", 'Frames are JSON: {"event": "<name>", "data": {...}}.')
            return False
        if event == "presence:active":
            # Each write is a database update and a fan-out: one per active_interval per connection,
            # the frames between only keep this connection's own idle timer going.
            moment = clock_now()
            if self._presence_written is None or moment - self._presence_written >= self.timing.active_interval:
                self._presence_written = moment
                self.hub.presence.active(self.user_id, self.session_id, moment)
            return True
        if event == "session:renew":
            self.renew(data.get("accessToken"))
        else:
            self.error("bad_request", f"Unknown event {event!r}.")
        return False

    def renew(self, token) -> None:
        """Swap onto a fresh access token of this same session. A token that is invalid, expired or of
        another session is refused with an `error` frame; the connection keeps its current token."""
        if not isinstance(token, str) or not token:
            return self.error("token_invalid", "session:renew needs {\"accessToken\": \"...\"}.")
        try:
            caller = self.hub.authenticate(token, clock_now())
        except errors.GatehouseError as err:
            return self.error(err.code, err.detail)
        finally:
            db.session.remove()
        if caller.session.id != self.session_id:
            return self.error("token_invalid", "The access token belongs to another session.")
        self._rights(caller.user.role == "admin")
        self.expires_at = datetime.fromtimestamp(caller.claims["exp"], timezone.utc)
        self._warned = False
