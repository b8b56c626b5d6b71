"""A mobile client that lost a refresh response gets the same pair back by retrying with its key."""
from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlalchemy import select

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import Session
from tests.actions import bearer, problem


def refresh(client, refresh_token: str, key: str):
    return client.post("/auth/refresh", json={"refreshToken": refresh_token}, headers={"Idempotency-Key": key})


def revoked_at(app, session_id: str):
    with app.app_context():
        return db.session.scalar(select(Session.revoked_at).where(Session.id == session_id))


def test_a_lost_refresh_response_is_recovered_without_tripping_reuse_detection(app, client, api):
    signed_in = api.register()
    session_id = signed_in["session"]["id"]
    lost = refresh(client, signed_in["tokens"]["refreshToken"], "refresh-1")
    assert lost.status_code == 200
    retry = refresh(client, signed_in["tokens"]["refreshToken"], "refresh-1")
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["tokens"] == lost.get_json()["tokens"]
    assert revoked_at(app, session_id) is None
    # The recovered pair is live: it refreshes and authenticates.
    pair = retry.get_json()["tokens"]
    assert api.get("/auth/me", token=pair["accessToken"]).status_code == 200
    assert refresh(client, pair["refreshToken"], "refresh-2").status_code == 200
    assert revoked_at(app, session_id) is None


def test_a_retry_after_60_seconds_is_refused(app, client, api):
    signed_in = api.register()
    first = refresh(client, signed_in["tokens"]["refreshToken"], "refresh-1")
    assert first.status_code == 200
    with time_machine.travel(now() + timedelta(seconds=61), tick=False):
        problem(refresh(client, signed_in["tokens"]["refreshToken"], "refresh-1"), 422, "idempotency_key_reused")
        # Refused without running again: the session and the pair given out first stay good.
        assert revoked_at(app, signed_in["session"]["id"]) is None
        assert refresh(client, first.get_json()["tokens"]["refreshToken"], "refresh-2").status_code == 200


def test_a_retry_after_logout_is_refused(app, client, api):
    signed_in = api.register()
    first = refresh(client, signed_in["tokens"]["refreshToken"], "refresh-1")
    assert first.status_code == 200
    logout = client.post("/auth/logout", headers=bearer(first.get_json()["tokens"]["accessToken"]))
    assert logout.status_code == 204
    problem(refresh(client, signed_in["tokens"]["refreshToken"], "refresh-1"), 401, "token_revoked")


def test_without_a_key_the_same_retry_trips_reuse_detection(app, client, api):
    signed_in = api.register()
    token = signed_in["tokens"]["refreshToken"]
    assert client.post("/auth/refresh", json={"refreshToken": token}).status_code == 200
    problem(client.post("/auth/refresh", json={"refreshToken": token}), 401, "refresh_token_reused")
    assert revoked_at(app, signed_in["session"]["id"]) is not None
