"""POST /auth/refresh: RFC 9700 rotation, reuse detection, absolute expiry, and the race."""
from datetime import datetime, timedelta, timezone

import time_machine
from sqlalchemy import func, select, text

from gatehouse.extensions import db
from gatehouse.models import RefreshToken, Session
from gatehouse.security.tokens import sha256_hex
from tests.actions import problem
from tests.concurrency import at_once

T0 = datetime(2026, 6, 1, tzinfo=timezone.utc)


def refresh(api, token):
    return api.client.post("/auth/refresh", json={"refreshToken": token})


def test_refresh_rotates_the_pair_and_spends_the_old_token(app, api):
    first = api.register()["tokens"]
    response = refresh(api, first["refreshToken"])
    assert response.status_code == 200
    second = response.get_json()["tokens"]
    assert second["refreshToken"] != first["refreshToken"] and second["accessToken"] != first["accessToken"]
    assert api.get("/auth/me", token=second["accessToken"]).status_code == 200
    with app.app_context():
        old = db.session.execute(select(RefreshToken).where(
            RefreshToken.token_hash == sha256_hex(first["refreshToken"]))).scalar_one()
        assert old.spent_at is not None


def test_only_hashes_are_stored(app, api):
    token = api.register()["tokens"]["refreshToken"]
    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM refresh_tokens")).all()
    assert rows and all(token not in str(row) for row in rows)


def test_rotation_never_extends_the_absolute_expiry(api):
    with time_machine.travel(T0, tick=False):
        tokens = api.register()["tokens"]
    expiry = tokens["refreshExpiresAt"]
    assert expiry == "2026-07-01T00:00:00.000Z"
    for day in (10, 20, 29):
        with time_machine.travel(T0 + timedelta(days=day), tick=False):
            response = refresh(api, tokens["refreshToken"])
            assert response.status_code == 200
            tokens = response.get_json()["tokens"]
            assert tokens["refreshExpiresAt"] == expiry
    with time_machine.travel(T0 + timedelta(days=30, seconds=1), tick=False):
        problem(refresh(api, tokens["refreshToken"]), 401, "token_expired")


def test_a_spent_token_used_again_revokes_the_whole_session(app, api):
    body = api.register()
    first = body["tokens"]
    second = refresh(api, first["refreshToken"]).get_json()["tokens"]
    problem(refresh(api, first["refreshToken"]), 401, "refresh_token_reused")
    with app.app_context():
        session = db.session.get(Session, body["session"]["id"])
        assert session.revoked_at is not None
        live = db.session.scalar(select(func.count()).select_from(RefreshToken).where(
            RefreshToken.session_id == session.id, RefreshToken.revoked_at.is_(None)))
        assert live == 0
    problem(refresh(api, second["refreshToken"]), 401, "token_revoked")
    problem(api.get("/auth/me", token=second["accessToken"]), 401, "token_revoked")


def test_reuse_in_one_session_leaves_the_users_other_sessions_alone(api):
    body = api.register(email="two-sessions@example.com")
    other = api.login(email="two-sessions@example.com")["tokens"]
    refresh(api, body["tokens"]["refreshToken"])
    refresh(api, body["tokens"]["refreshToken"])
    assert refresh(api, other["refreshToken"]).status_code == 200


def test_an_access_token_or_garbage_is_not_a_refresh_token(api):
    tokens = api.register()["tokens"]
    problem(refresh(api, tokens["accessToken"]), 401, "token_invalid")
    problem(refresh(api, "x" * 43), 401, "token_invalid")


def test_a_refresh_token_of_a_logged_out_session_is_revoked(api):
    tokens = api.register()["tokens"]
    assert api.post("/auth/logout", json={}, token=tokens["accessToken"]).status_code == 204
    problem(refresh(api, tokens["refreshToken"]), 401, "token_revoked")


def test_refresh_of_a_disabled_account_is_refused(app, api):
    from sqlalchemy import update

    from gatehouse.models import User

    tokens = api.register()["tokens"]
    with app.app_context():
        db.session.execute(update(User).values(disabled=True))
        db.session.commit()
    problem(refresh(api, tokens["refreshToken"]), 401, "token_revoked")
    with app.app_context():  # the session revoked, and no token issued for it (nor the old one spent)
        assert db.session.scalar(select(Session.revoked_at)) is not None
        assert db.session.execute(select(RefreshToken.token_hash, RefreshToken.spent_at)).all() == \
            [(sha256_hex(tokens["refreshToken"]), None)]


def test_concurrent_use_of_one_token_gives_exactly_one_pair(app, api):
    body = api.register()
    token = body["tokens"]["refreshToken"]
    responses = at_once(app, 8, lambda client: client.post("/auth/refresh", json={"refreshToken": token}))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [401] * 7, [r.get_json() for r in responses]
    with app.app_context():
        usable = db.session.scalar(
            select(func.count()).select_from(RefreshToken).join(Session, Session.id == RefreshToken.session_id)
            .where(RefreshToken.spent_at.is_(None), RefreshToken.revoked_at.is_(None),
                   Session.revoked_at.is_(None)))
        assert usable <= 1
