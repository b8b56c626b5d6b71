"""DELETE /users/me: soft delete behind the password; the account then looks unknown and its tokens die."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from gatehouse.extensions import db
from gatehouse.models import Session, User
from tests.actions import PASSWORD, problem


@pytest.fixture
def account(api):
    body = api.register(username="dora")
    email = body["user"]["email"]
    other = api.login(email=email, device={"name": "Tablet", "platform": "android"})
    return {"id": body["user"]["id"], "email": email, "token": body["tokens"]["accessToken"],
            "refresh": body["tokens"]["refreshToken"], "other": other}


def stored(app, user_id):
    with app.app_context():
        user = db.session.get(User, user_id)
        live = db.session.scalars(select(Session.id).where(Session.user_id == user_id,
                                                           Session.revoked_at.is_(None))).all()
        return user.deleted_at, list(live)


def test_delete_marks_the_account_deleted_and_revokes_every_session(app, api, account):
    response = api.delete("/users/me", {"password": PASSWORD}, account["token"])
    assert response.status_code == 204
    assert response.get_data() == b""
    deleted_at, live = stored(app, account["id"])
    assert deleted_at is not None
    assert live == []


def test_every_token_of_the_account_is_refused_afterwards(api, account):
    api.delete("/users/me", {"password": PASSWORD}, account["token"])
    for token in (account["token"], account["other"]["tokens"]["accessToken"]):
        problem(api.get("/users/me", token), 401, "token_revoked")
        problem(api.get("/auth/me", token), 401, "token_revoked")
    for refresh in (account["refresh"], account["other"]["tokens"]["refreshToken"]):
        problem(api.post("/auth/refresh", {"refreshToken": refresh}), 401, "token_revoked")


def test_sign_in_then_answers_exactly_like_an_unknown_account(api, account):
    api.delete("/users/me", {"password": PASSWORD}, account["token"])
    deleted = api.post("/auth/login", {"email": account["email"], "password": PASSWORD})
    unknown = api.post("/auth/login", {"email": "nobody-at-all@example.com", "password": PASSWORD})
    assert problem(deleted, 401, "invalid_credentials") == problem(unknown, 401, "invalid_credentials")
    by_username = api.post("/auth/login", {"username": "dora", "password": PASSWORD})
    assert by_username.get_json() == unknown.get_json()


def test_the_email_and_username_stay_taken_until_a_purge(api, account):
    api.delete("/users/me", {"password": PASSWORD}, account["token"])
    problem(api.post("/auth/register", {"email": account["email"], "password": PASSWORD}), 409, "email_taken")


def test_a_wrong_password_is_401_and_deletes_nothing(app, api, account):
    problem(api.delete("/users/me", {"password": "not my password, sorry"}, account["token"]), 401,
            "invalid_credentials")
    deleted_at, live = stored(app, account["id"])
    assert deleted_at is None and len(live) == 2
    assert api.get("/users/me", account["token"]).status_code == 200


@pytest.mark.parametrize("body", [None, {}, {"password": ""}, {"password": PASSWORD, "confirm": True}])
def test_the_password_is_required(app, api, account, body):
    problem(api.delete("/users/me", body, account["token"]), 422, "validation_failed")
    assert stored(app, account["id"])[0] is None


def test_delete_needs_a_token(api):
    problem(api.delete("/users/me", {"password": PASSWORD}), 401, "token_invalid")
