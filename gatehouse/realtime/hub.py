"""The realtime hub of one application: registry, bridge and presence, and serving one socket."""
from __future__ import annotations

from datetime import datetime, timedelta

import logging

from flask import Flask, current_app

from gatehouse.clock import now
from gatehouse.config import MAX_BODY_BYTES
from gatehouse.extensions import db
from gatehouse.errors import TokenRevoked
from gatehouse.realtime.bridge import RedisBridge, SiblingBridge, sibling_directory
from gatehouse.realtime.bus import bus
from gatehouse.realtime.connection import Connection, Revoked, Timing
from gatehouse.realtime.presence import Presence, Roster
from gatehouse.realtime.registry import Registry
from gatehouse.services import sessions
from gatehouse.web import failure_fields

log = logging.getLogger(__name__)

EXTENSION = "gatehouse.realtime"
CLOSE_TRY_AGAIN_LATER = 1013


class Hub:
    def __init__(self, config: dict, redis=None):
        self.registry = Registry(capacity=config["WS_CONNECTIONS"])
        self.bridge = (RedisBridge(redis, self.registry.dispatch) if redis is not None
                       else SiblingBridge(sibling_directory(config["SQLALCHEMY_DATABASE_URI"]), self.registry.dispatch))
        ping = config["WS_PING_SECONDS"]
        self.presence = Presence(Roster(self.registry, redis, lapse_seconds=3 * ping), config["WS_IDLE_SECONDS"])
        self.timing = Timing(expiry_warning=timedelta(seconds=config["WS_EXPIRY_WARNING_SECONDS"]),
                             recheck=timedelta(seconds=config["WS_RECHECK_SECONDS"]),
                             heartbeat=timedelta(seconds=ping),
                             active_interval=timedelta(seconds=config["WS_ACTIVE_SECONDS"]),
                             frames_per_minute=config["WS_FRAMES_PER_MINUTE"])

    def serve(self, ws, caller: sessions.Caller, expires_at: datetime) -> None:
        """Hold an accepted socket until it closes. The handshake's queries are over: their connection
        goes back to the pool now, not when the socket closes."""
        db.session.remove()
        conn = Connection(ws, caller.user.id, caller.session.id, caller.user.role == "admin", expires_at, self,
                          self.timing)
        self.bridge.ensure_listening()
        if not self.registry.add(conn):
            ws.close(CLOSE_TRY_AGAIN_LATER, "too many connections")
            return
        try:
            conn.run()
        finally:
            self.registry.remove(conn)
            try:
                self.presence.closed(conn.user_id, conn.id, now())
            except Exception as exc:  # presence is best effort; the socket is gone either way
                log.warning("presence not announced", extra=failure_fields(exc))
            finally:
                db.session.remove()

    @staticmethod
    def authenticate(access_token: str, now: datetime) -> sessions.Caller:
        return sessions.authenticate(access_token, now)

    @staticmethod
    def check_live(session_id: str, now: datetime) -> bool:
        """The periodic re-check: Revoked unless the session is live; whether its account is an admin
        now, read afresh. Its database connection is returned before the socket waits again."""
        try:
            return sessions.live_caller(session_id, now, fresh=True).user.role == "admin"
        except TokenRevoked:
            raise Revoked() from None
        finally:
            db.session.remove()


def install(app: Flask) -> None:
    """Give the app its hub and route every bus event to it (through Redis when configured)."""
    config = app.config
    hub = Hub(config, app.extensions.get("gatehouse.redis"))
    app.extensions[EXTENSION] = hub
    # simple-websocket enforces both: a larger message closes with 1009; a missed pong closes the socket.
    config["SOCK_SERVER_OPTIONS"] = {"ping_interval": config["WS_PING_SECONDS"], "max_message_size": MAX_BODY_BYTES}
    with app.app_context():
        bus().subscribe(hub.bridge.forward)


def hub() -> Hub:
    return current_app.extensions[EXTENSION]


