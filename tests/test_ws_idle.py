"""Idle sockets hold nothing: every re-check, presence write and handshake query gives its database
connection back before the socket waits again, so more idle sockets than the pool has connections
leave HTTP requests and events unaffected across many re-check periods."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text, update

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import Session
from tests.live_server import WAIT

pytestmark = pytest.mark.slow

POOL = {"sqlite": 15, "postgres": 20}  # pool_size + max_overflow of each dialect's engine


def revoke_quietly(app, session_id: str) -> None:
    """Revoke a session in the database alone: no event, so only a re-check can notice."""
    with app.app_context():
        db.session.execute(update(Session).where(Session.id == session_id).values(revoked_at=now()))
        db.session.commit()


def idle_in_transaction(app) -> int:
    with app.app_context():
        count = db.session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND state = 'idle in transaction'"))
        db.session.remove()
        return count


def test_more_idle_sockets_than_pooled_connections_leave_http_and_events_unaffected(serve, app, leg):
    server = serve(WS_RECHECK_SECONDS=1, DATABASE_TIMEOUT=2)
    users = [server.register() for _ in range(3)]
    idle = [server.connect(token=user["tokens"]["accessToken"]) for user in users for _ in range(9)]
    assert len(idle) > POOL[leg]
    token = users[0]["tokens"]["accessToken"]
    mine = idle[:9]
    for period in range(3):
        probe = server.register()
        probe_socket = server.connect(token=probe["tokens"]["accessToken"])
        revoke_quietly(app, probe["session"]["id"])
        started = time.monotonic()
        assert probe_socket.closed_with() == 4401  # a re-check period has passed for every socket
        assert time.monotonic() - started < WAIT
        if leg == "postgres":  # a socket that kept its transaction would show here, each of the 27
            assert idle_in_transaction(app) <= 2  # at most a re-check caught between two statements
        assert server.call("GET", "/auth/me", token).status_code == 200
        response = server.call("PATCH", "/users/me", token, json={"displayName": f"Period {period}"})
        assert response.status_code == 200, response.text
        for sock in mine:
            assert sock.next_event("entity:updated")["version"] == period + 2
    for sock in idle:
        sock.close()
