"""POST /users/me/password: current password checked, policy applied, other sessions revoked, notice queued."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from gatehouse.extensions import db
from gatehouse.models import OutboxMessage, Session, User
from gatehouse.realtime.bus import bus
from tests.actions import PASSWORD, problem

NEW_PASSWORD = "a brand new passphrase for gatehouse"


@pytest.fixture
def account(api):
    """One account signed in three times: registration (the caller) and two other devices."""
    body = api.register(username="carol")
    email = body["user"]["email"]
    others = [api.login(email=email, device={"id": f"d{i}", "name": f"Phone {i}", "platform": "ios"})
              for i in range(2)]
    return {"id": body["user"]["id"], "email": email, "token": body["tokens"]["accessToken"],
            "session": body["session"]["id"], "others": others}


def change(api, account, current=PASSWORD, new=NEW_PASSWORD):
    return api.post("/users/me/password", {"currentPassword": current, "newPassword": new}, account["token"])


def mails(app, user_id):
    """The user's queued mails but for the verification code that registration sends and the new-sign-in
    notices of the fixture's sign-ins on new devices."""
    with app.app_context():
        return db.session.scalars(select(OutboxMessage).where(
            OutboxMessage.user_id == user_id, OutboxMessage.template.not_in(("verify-email", "new-sign-in")))).all()


def live_sessions(app, user_id):
    with app.app_context():
        return set(db.session.scalars(
            select(Session.id).where(Session.user_id == user_id, Session.revoked_at.is_(None))))


def password_hash(app, user_id):
    with app.app_context():
        return db.session.get(User, user_id).password_hash


def test_the_password_changes_and_every_other_session_is_revoked(app, api, account):
    revoked = []
    with app.app_context():
        unsubscribe = bus().subscribe(lambda user_id, event, data: revoked.append(data["sessionId"])
                                      if event == "session:revoked" else None)
    response = change(api, account)
    unsubscribe()
    assert response.status_code == 200
    assert response.get_json()["user"]["id"] == account["id"]

    assert live_sessions(app, account["id"]) == {account["session"]}
    assert sorted(revoked) == sorted(other["session"]["id"] for other in account["others"])
    assert api.get("/users/me", account["token"]).status_code == 200
    for other in account["others"]:
        problem(api.get("/users/me", other["tokens"]["accessToken"]), 401, "token_revoked")
        problem(api.post("/auth/refresh", {"refreshToken": other["tokens"]["refreshToken"]}), 401, "token_revoked")

    api.login(email=account["email"], password=NEW_PASSWORD)
    problem(api.post("/auth/login", {"email": account["email"], "password": PASSWORD}), 401, "invalid_credentials")


def test_a_notice_is_queued_in_the_outbox(app, api, account):
    change(api, account)
    [mail] = mails(app, account["id"])
    assert (mail.template, mail.recipient, mail.status) == ("password-changed", account["email"], "pending")


def test_a_wrong_current_password_is_401_and_changes_nothing(app, api, account):
    before = password_hash(app, account["id"])
    live = live_sessions(app, account["id"])
    problem(change(api, account, current="not the password at all"), 401, "invalid_credentials")
    assert password_hash(app, account["id"]) == before
    assert live_sessions(app, account["id"]) == live and len(live) == 3
    assert mails(app, account["id"]) == []


@pytest.mark.parametrize("new", ["short", "password1234", "carol-and-friends-forever"])
def test_the_password_policy_applies_to_the_new_password(app, api, account, new):
    before = password_hash(app, account["id"])
    body = problem(change(api, account, new=new), 422, "password_too_weak")
    assert body["errors"][0]["field"] == "newPassword"
    assert password_hash(app, account["id"]) == before
    assert len(live_sessions(app, account["id"])) == 3


def test_the_new_password_may_not_contain_the_email(app, api, account):
    local = account["email"].split("@")[0]
    problem(change(api, account, new=f"{local} is my password now"), 422, "password_too_weak")


@pytest.mark.parametrize("body", [{"currentPassword": PASSWORD}, {"newPassword": NEW_PASSWORD},
                                  {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD, "extra": 1},
                                  {"current_password": PASSWORD, "newPassword": NEW_PASSWORD}])
def test_the_body_is_validated(api, account, body):
    problem(api.post("/users/me/password", body, account["token"]), 422, "validation_failed")


def test_a_password_change_needs_a_token(api):
    problem(api.post("/users/me/password", {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}),
            401, "token_invalid")
