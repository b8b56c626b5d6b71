"""POST /auth/logout and GET /auth/me."""
from datetime import datetime, timedelta, timezone

import time_machine
from sqlalchemy import select

from gatehouse.extensions import db
from gatehouse.models import Session
from tests.actions import problem

T0 = datetime(2026, 7, 1, tzinfo=timezone.utc)


def test_logout_refuses_the_old_access_token_at_the_next_request(app, api):
    body = api.register()
    token = body["tokens"]["accessToken"]
    assert api.get("/auth/me", token=token).status_code == 200
    response = api.post("/auth/logout", token=token)
    assert response.status_code == 204 and response.get_data() == b""
    problem(api.get("/auth/me", token=token), 401, "token_revoked")
    with app.app_context():
        assert db.session.get(Session, body["session"]["id"]).revoked_at is not None


def test_logout_leaves_other_sessions_unless_all_are_asked_for(app, api):
    first = api.register(email="many@example.com")["tokens"]
    second = api.login(email="many@example.com")["tokens"]
    third = api.login(email="many@example.com")["tokens"]
    api.post("/auth/logout", json={"allSessions": False}, token=first["accessToken"])
    assert api.get("/auth/me", token=second["accessToken"]).status_code == 200
    assert api.post("/auth/logout", json={"allSessions": True}, token=second["accessToken"]).status_code == 204
    problem(api.get("/auth/me", token=third["accessToken"]), 401, "token_revoked")
    with app.app_context():
        assert all(s.revoked_at is not None for s in db.session.execute(select(Session)).scalars())


def test_logout_needs_a_token(client):
    problem(client.post("/auth/logout"), 401, "token_invalid")


def test_me_returns_the_user_and_the_current_session(api):
    body = api.register(device={"name": "Laptop", "platform": "web"})
    me = api.get("/auth/me", token=body["tokens"]["accessToken"]).get_json()
    assert me["user"]["id"] == body["user"]["id"]
    assert me["session"]["id"] == body["session"]["id"] and me["session"]["current"] is True
    assert me["session"]["device"]["name"] == "Laptop"


def test_me_renews_last_seen_at_most_once_a_minute(app, api):
    with time_machine.travel(T0, tick=False):
        body = api.register()
    token, session_id = body["tokens"]["accessToken"], body["session"]["id"]

    def last_seen():
        with app.app_context():
            return db.session.get(Session, session_id).last_seen_at

    with time_machine.travel(T0 + timedelta(seconds=59), tick=False):
        api.get("/auth/me", token=token)
    assert last_seen() == T0
    with time_machine.travel(T0 + timedelta(seconds=60), tick=False):
        me = api.get("/auth/me", token=token).get_json()
    assert last_seen() == T0 + timedelta(seconds=60)
    assert me["session"]["lastSeenAt"] == "2026-07-01T00:01:00.000Z"
