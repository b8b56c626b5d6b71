"""GET /ws against a real gunicorn and a real WebSocket client (CONTRACT §6), and POST /auth/ws-ticket."""
from __future__ import annotations

import base64
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from gatehouse.extensions import db
from gatehouse.models import Session, User, WsTicket
from gatehouse.security.tokens import sha256_hex
from tests.live_server import UPGRADE, WAIT

pytestmark = pytest.mark.slow


def expiry(token: str) -> datetime:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.fromtimestamp(claims["exp"], timezone.utc)


# ---- the handshake ---------------------------------------------------------------------------------

def test_without_credentials_the_upgrade_is_refused_with_401_problem_json(server):
    response = server.handshake()
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "token_invalid"
    assert "Upgrade" not in response.headers and "Sec-WebSocket-Accept" not in response.headers
    assert server.handshake(Authorization="Bearer not-a-token").status_code == 401
    assert server.handshake("/ws?ticket=made-up").status_code == 401


def test_a_bearer_token_opens_the_socket_and_profile_changes_arrive(server):
    auth = server.register()
    token, user_id = auth["tokens"]["accessToken"], auth["user"]["id"]
    first, second = server.connect(token=token), server.connect(token=token)
    response = server.call("PATCH", "/users/me", token, json={"displayName": "Realtime"})
    assert response.status_code == 200
    for sock in (first, second):
        data = sock.next_event("entity:updated")
        assert data == {"entity": "user", "id": user_id, "version": response.json()["user"]["version"],
                        "fields": ["displayName"]}
        sock.close()


def test_a_revoked_session_cannot_open_the_socket(server):
    token = server.register()["tokens"]["accessToken"]
    assert server.call("POST", "/auth/logout", token, json={}).status_code == 204
    response = server.handshake(Authorization=f"Bearer {token}")
    assert response.status_code == 401 and response.json()["code"] == "token_revoked"


def test_a_ticket_opens_once_and_is_stored_only_as_its_hash(server, app):
    token = server.register()["tokens"]["accessToken"]
    response = server.call("POST", "/auth/ws-ticket", token)
    assert response.status_code == 201
    body = response.json()
    ticket = body["ticket"]
    issued = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(seconds=55) < issued - datetime.now(timezone.utc) <= timedelta(seconds=60)
    with app.app_context():
        row = db.session.scalars(select(WsTicket)).one()
        assert row.ticket_hash == sha256_hex(ticket) and row.used_at is None
        stored = db.session.execute(select(WsTicket.__table__)).one()
        assert ticket not in [str(value) for value in stored]
    sock = server.connect(f"/ws?ticket={ticket}")
    again = server.handshake(f"/ws?ticket={ticket}")
    assert again.status_code == 401 and again.json()["code"] == "token_invalid"
    sock.close()
    assert server.call("POST", "/auth/ws-ticket").status_code == 401  # a ticket needs a bearer token


def test_an_expired_ticket_is_refused(server, app):
    token = server.register()["tokens"]["accessToken"]
    ticket = server.ticket(token)
    with app.app_context():
        db.session.execute(update(WsTicket).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        db.session.commit()
    assert server.handshake(f"/ws?ticket={ticket}").status_code == 401


def test_a_ticket_used_twice_at_once_opens_exactly_one_socket(serve):
    server = serve(processes=2)
    token = server.register()["tokens"]["accessToken"]
    for _ in range(3):
        ticket = server.ticket(token)
        barrier = threading.Barrier(4)
        outcomes = []

        def use():
            barrier.wait(timeout=WAIT)
            outcomes.append(raw_handshake(server.port, f"/ws?ticket={ticket}"))

        threads = [threading.Thread(target=use) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert sorted(outcomes) == [101, 401, 401, 401]


def raw_handshake(port: int, path: str) -> int:
    """The status line of an upgrade request, on a raw socket closed right after."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as conn:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in UPGRADE.items())]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(conn.recv(1024).split(b" ", 2)[1])


def portal_cookie(app, user_id: str) -> str:
    """A portal session (kind "portal") and the signed Flask session cookie that names it."""
    from gatehouse.services import sessions

    with app.app_context():
        user = db.session.get(User, user_id)
        session = sessions.start(user, None, ip_address=None, user_agent=None, now=datetime.now(timezone.utc),
                                 kind="portal")
        db.session.commit()
        cookie = app.session_interface.get_signing_serializer(app).dumps({"sid": session.id})
    return f"{app.config.get('SESSION_COOKIE_NAME', 'session')}={cookie}"


def test_the_portal_cookie_opens_the_socket_only_from_the_services_own_origin(server, app):
    user_id = server.register()["user"]["id"]
    cookie = portal_cookie(app, user_id)
    response = server.handshake(Cookie=cookie, Origin="https://evil.example")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert server.handshake(Cookie=cookie).status_code == 403  # no Origin at all
    # simple-websocket's client sends "Host: 127.0.0.1" (no port), so that is the service's own origin here.
    sock = server.connect(headers={"Cookie": cookie, "Origin": "http://127.0.0.1"})
    sock.close()


# ---- the connection -------------------------------------------------------------------------------

def test_logout_sends_session_revoked_then_closes_with_4401(server):
    token = server.register()["tokens"]["accessToken"]
    sock = server.connect(token=token)
    assert server.call("POST", "/auth/logout", token, json={}).status_code == 204
    assert sock.next_event("session:revoked") == {}
    assert sock.closed_with() == 4401


def test_a_message_over_64_kib_closes_with_1009(server):
    sock = server.connect(token=server.register()["tokens"]["accessToken"])
    sock.ws.send("x" * (64 * 1024 + 1))
    assert sock.closed_with() == 1009


def test_presence_active_announces_and_renews_last_seen_at(server, app):
    auth = server.register()
    token, user_id, session_id = auth["tokens"]["accessToken"], auth["user"]["id"], auth["session"]["id"]
    with app.app_context():
        db.session.execute(update(Session).values(last_seen_at=datetime.now(timezone.utc) - timedelta(hours=1)))
        db.session.commit()
    sock = server.connect(token=token)
    before = datetime.now(timezone.utc)
    sock.send("presence:active")
    data = sock.next_event("presence:updated")
    assert data["userId"] == user_id and data["status"] == "active"
    with app.app_context():
        seen = db.session.get(Session, session_id).last_seen_at
    assert seen >= before - timedelta(seconds=1)
    assert datetime.fromisoformat(data["lastActiveAt"].replace("Z", "+00:00")) >= before - timedelta(seconds=1)
    sock.close()


def test_presence_goes_idle_then_offline_and_admins_see_only_visible_users(serve, app):
    server = serve(WS_IDLE_SECONDS=1)
    admin, visible, hidden = server.register(), server.register(), server.register()
    with app.app_context():
        db.session.execute(update(User).where(User.id == admin["user"]["id"]).values(role="admin"))
        db.session.execute(update(User).where(User.id == hidden["user"]["id"]).values(show_status="hidden"))
        db.session.commit()
    watcher = server.connect(token=admin["tokens"]["accessToken"])

    user = server.connect(token=visible["tokens"]["accessToken"])
    user.send("presence:active")
    assert user.next_event("presence:updated")["status"] == "active"
    assert user.next_event("presence:updated", timeout=5)["status"] == "idle"
    user.close()
    seen = []
    while not seen or seen[-1]["status"] != "offline":
        data = watcher.next_event("presence:updated")
        if data["userId"] != admin["user"]["id"]:
            seen.append(data)
    assert {d["userId"] for d in seen} == {visible["user"]["id"]}
    assert [d["status"] for d in seen][-2:] == ["idle", "offline"]

    server.connect(token=hidden["tokens"]["accessToken"]).close()
    fence = server.connect(token=visible["tokens"]["accessToken"])  # a later event: anything before it arrived
    while (data := watcher.next_event("presence:updated"))["userId"] != visible["user"]["id"]:
        assert data["userId"] != hidden["user"]["id"]
    fence.close()
    watcher.close()


def test_unknown_or_malformed_frames_get_an_error_frame_and_the_socket_stays(server):
    sock = server.connect(token=server.register()["tokens"]["accessToken"])
    sock.ws.send("not json")
    assert sock.next_event("error")["code"] == "bad_request"
    sock.send("nonsense:event")
    assert sock.next_event("error")["code"] == "bad_request"
    sock.send("presence:active")
    assert sock.next_event("presence:updated")["status"] == "active"
    sock.close()


def test_token_expiring_then_4401_when_the_token_is_not_renewed(serve):
    server = serve(ACCESS_TOKEN_TTL=6, WS_EXPIRY_WARNING_SECONDS=4)
    token = server.register()["tokens"]["accessToken"]
    sock = server.connect(token=token)
    warning = sock.next_event("token:expiring")
    assert datetime.fromisoformat(warning["expiresAt"].replace("Z", "+00:00")) == expiry(token)
    assert sock.next_event("session:revoked") == {}
    assert datetime.now(timezone.utc) >= expiry(token)
    assert sock.closed_with() == 4401


def test_session_renew_moves_the_connection_onto_a_fresh_token(serve):
    # Wide margins: the first token must outlive the refresh and the renewal even on a loaded machine.
    server = serve(ACCESS_TOKEN_TTL=10, WS_EXPIRY_WARNING_SECONDS=8)
    auth = server.register()
    first = auth["tokens"]["accessToken"]
    sock = server.connect(token=first)
    sock.next_event("token:expiring")  # two seconds after connecting
    # Token expiries have whole-second resolution: refresh in a later second than the first was issued.
    time.sleep(max(0.0, 1.1 - (datetime.now(timezone.utc) - (expiry(first) - timedelta(seconds=10))).total_seconds()))
    refreshed = server.call("POST", "/auth/refresh", json={"refreshToken": auth["tokens"]["refreshToken"]})
    fresh = refreshed.json()["tokens"]["accessToken"]
    assert expiry(fresh) > expiry(first)
    sock.send("session:renew", {"accessToken": fresh})
    warning = sock.next_event("token:expiring")
    assert datetime.fromisoformat(warning["expiresAt"].replace("Z", "+00:00")) == expiry(fresh)
    assert sock.next_event("session:revoked") == {}
    assert datetime.now(timezone.utc) >= expiry(fresh) > expiry(first)
    assert sock.closed_with() == 4401


def test_session_renew_with_a_token_of_another_session_is_refused_and_changes_nothing(server):
    token = server.register()["tokens"]["accessToken"]
    stranger = server.register()["tokens"]["accessToken"]
    sock = server.connect(token=token)
    sock.send("session:renew", {"accessToken": stranger})
    assert sock.next_event("error")["code"] == "token_invalid"
    sock.send("session:renew", {"accessToken": "garbage"})
    assert sock.next_event("error")["code"] == "token_invalid"
    sock.send("presence:active")
    assert sock.next_event("presence:updated")["status"] == "active"
    sock.close()


def test_a_client_that_stops_answering_pings_is_dropped(serve):
    server = serve(WS_PING_SECONDS=1)
    token = server.register()["tokens"]["accessToken"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as conn:
        lines = ["GET /ws HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Authorization: Bearer {token}",
                 *(f"{k}: {v}" for k, v in UPGRADE.items())]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        # Never answer: read (and ignore) frames, pings included, until the server hangs up.
        received, started = b"", time.monotonic()
        while chunk := conn.recv(4096):
            received += chunk
            assert time.monotonic() - started < WAIT
    assert received.startswith(b"HTTP/1.1 101")
    assert b"\x03\xf0" in received  # a close frame with code 1008 (policy violation: ping/pong timeout)
    assert time.monotonic() - started >= 1
