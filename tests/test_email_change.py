"""Changing the email address (CONTRACT §10): a code to the new address, a notice with a revert link
to the old one, the revert, and every limit of the way: taken addresses, expiry, a newer request,
concurrent confirmations, single use."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import SecurityEvent, Session, User
from tests.actions import PASSWORD, problem
from tests.concurrency import at_once
from tests.smtp import deliver, last_code, text_of

CODE_MAIL = "Confirm your new email address"
NOTICE = "email address of your Gatehouse account was changed"
RESET = "Reset your Gatehouse password"
NEW_PASSWORD = "a brand new passphrase 42"


pytestmark = pytest.mark.mail(ACCESS_TOKEN_TTL="7200")  # tokens outlive the code


@pytest.fixture
def alice(api):
    body = api.register(email="alice@example.com")
    return {"id": body["user"]["id"], "token": body["tokens"]["accessToken"], "session": body["session"]["id"]}


def ask(api, who, new_email: str):
    return api.post("/users/me/email", {"newEmail": new_email}, token=who["token"])


def confirm(api, who, code: str):
    return api.post("/users/me/email/confirm", {"code": code}, token=who["token"])


def mailed_code(app, sink, address: str) -> str:
    deliver(app)
    return last_code(sink, address, CODE_MAIL)


def revert_token(app, sink, old_address: str) -> str:
    deliver(app)
    [notice] = sink.to(old_address, NOTICE)
    return re.search(r"token=([A-Za-z0-9_\-]+)", text_of(notice)).group(1)


def user_row(app, user_id: str) -> User:
    with app.app_context():
        return db.session.get(User, user_id)


def kinds(app, user_id: str, kind: str) -> list[SecurityEvent]:
    with app.app_context():
        return db.session.scalars(select(SecurityEvent).where(SecurityEvent.user_id == user_id,
                                                              SecurityEvent.kind == kind)).all()


def test_change_end_to_end_code_to_the_new_address_notice_to_the_old(app, api, alice, smtp_sink, events):
    assert ask(api, alice, "Alice.New@Example.com").status_code == 202
    code = mailed_code(app, smtp_sink, "Alice.New@example.com")  # the domain in its normal form
    assert smtp_sink.to("alice@example.com", NOTICE) == []
    # Nothing changes while unconfirmed.
    assert api.get("/users/me", alice["token"]).get_json()["user"]["email"] == "alice@example.com"

    response = confirm(api, alice, code)
    assert response.status_code == 200, response.get_json()
    user = response.get_json()["user"]
    assert user["email"] == "Alice.New@example.com" and user["emailVerified"] is True
    row = user_row(app, alice["id"])
    assert row.email_key == "alice.new@example.com" and row.email_verified_at is not None
    assert ("entity:updated", ["email", "emailVerified"]) in [(e, d.get("fields")) for _, e, d in events]

    token = revert_token(app, smtp_sink, "alice@example.com")
    assert len(token) >= 40
    [requested] = kinds(app, alice["id"], "email_change_requested")
    [changed] = kinds(app, alice["id"], "email_changed")
    assert requested.session_id == changed.session_id == alice["session"]
    assert changed.detail == {"oldEmail": "alice@example.com", "newEmail": "Alice.New@example.com"}
    assert changed.ip_address == "127.0.0.1"
    problem(confirm(api, alice, code), 400, "invalid_code")  # the code was used


def test_revert_restores_the_old_address_revokes_every_session_and_locks_the_password(app, api, alice, smtp_sink):
    other = api.login(email="alice@example.com")
    ask(api, alice, "taken-over@example.com")
    confirm(api, alice, mailed_code(app, smtp_sink, "taken-over@example.com"))
    token = revert_token(app, smtp_sink, "alice@example.com")

    response = api.post("/auth/email/revert", {"token": token})
    assert response.status_code == 200, response.get_json()
    row = user_row(app, alice["id"])
    assert row.email == "alice@example.com" and row.password_locked_at is not None
    with app.app_context():
        live = db.session.scalar(select(func.count()).select_from(Session).where(
            Session.user_id == alice["id"], Session.revoked_at.is_(None)))
    assert live == 0
    problem(api.get("/users/me", alice["token"]), 401, "token_revoked")
    problem(api.get("/users/me", other["tokens"]["accessToken"]), 401, "token_revoked")
    problem(api.post("/auth/login", {"email": "alice@example.com", "password": PASSWORD}), 401, "invalid_credentials")
    [reverted] = kinds(app, alice["id"], "email_reverted")
    assert reverted.detail == {"email": "alice@example.com", "replaced": "taken-over@example.com"}
    problem(api.post("/auth/email/revert", {"token": token}), 400, "invalid_code")  # once only
    assert len(kinds(app, alice["id"], "email_reverted")) == 1

    # The reset code mailed to the restored address sets a new password, and sign-in works again.
    deliver(app)
    code = last_code(smtp_sink, "alice@example.com", RESET)
    assert api.post("/auth/reset-password", {"email": "alice@example.com", "code": code,
                                             "newPassword": NEW_PASSWORD}).status_code == 200
    api.login(email="alice@example.com", password=NEW_PASSWORD)


def test_an_address_taken_at_request_is_refused_and_nothing_is_written(app, api, alice, smtp_sink):
    api.register(email="bob@example.com")
    problem(ask(api, alice, " BOB@example.com "), 409, "email_taken")
    assert kinds(app, alice["id"], "email_change_requested") == []
    deliver(app)
    assert smtp_sink.to("bob@example.com", CODE_MAIL) == []
    problem(ask(api, alice, "alice@example.com"), 422, "validation_failed")  # its own address


def test_an_address_taken_between_request_and_confirm_is_refused_at_confirm(app, api, alice, smtp_sink):
    assert ask(api, alice, "race@example.com").status_code == 202
    code = mailed_code(app, smtp_sink, "race@example.com")
    api.register(email="race@example.com")
    problem(confirm(api, alice, code), 409, "email_taken")
    assert user_row(app, alice["id"]).email == "alice@example.com"
    assert kinds(app, alice["id"], "email_changed") == []


def test_concurrent_confirms_of_one_address_let_exactly_one_account_have_it(app, api, smtp_sink, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    people = []
    for index in range(4):
        body = api.register(email=f"p{index}@example.com")
        who = {"id": body["user"]["id"], "token": body["tokens"]["accessToken"]}
        assert ask(api, who, "wanted@example.com").status_code == 202
        deliver(app)
        who["code"] = last_code(smtp_sink, "wanted@example.com", CODE_MAIL)
        people.append(who)
    turns = iter(people)

    def attempt(client):
        who = next(turns)
        return client.post("/users/me/email/confirm", json={"code": who["code"]},
                           headers={"Authorization": f"Bearer {who['token']}"}).status_code

    statuses = sorted(at_once(app, len(people), attempt))
    assert statuses == [200, 409, 409, 409]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)
                                 .where(User.email_key == "wanted@example.com")) == 1


def test_an_expired_request_does_nothing(app, api, alice, smtp_sink):
    ask(api, alice, "late@example.com")
    code = mailed_code(app, smtp_sink, "late@example.com")
    ttl = app.config["EMAIL_CHANGE_TTL"]
    for offset in (ttl, ttl + 1):
        with time_machine.travel(now() + timedelta(seconds=offset)):
            problem(confirm(api, alice, code), 400, "invalid_code")
    assert user_row(app, alice["id"]).email == "alice@example.com"
    with time_machine.travel(now() + timedelta(seconds=ttl - 1)):
        assert confirm(api, alice, code).status_code == 200  # one second before it lapses, it still works


def test_a_newer_request_voids_the_older_code(app, api, alice, smtp_sink):
    ask(api, alice, "first@example.com")
    first = mailed_code(app, smtp_sink, "first@example.com")
    ask(api, alice, "second@example.com")
    second = mailed_code(app, smtp_sink, "second@example.com")
    problem(confirm(api, alice, first), 400, "invalid_code")
    assert confirm(api, alice, second).get_json()["user"]["email"] == "second@example.com"


def test_five_wrong_codes_kill_the_code(app, api, alice, smtp_sink):
    ask(api, alice, "guess@example.com")
    code = mailed_code(app, smtp_sink, "guess@example.com")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        problem(confirm(api, alice, wrong), 400, "invalid_code")
    problem(confirm(api, alice, code), 400, "invalid_code")
    assert user_row(app, alice["id"]).email == "alice@example.com"


def test_a_request_needs_a_fresh_sign_in(app, api, alice):
    with time_machine.travel(now() + timedelta(seconds=app.config["REAUTH_MAX_AGE"] + 1)):
        problem(ask(api, alice, "stale@example.com"), 401, "reauthentication_required")


def test_the_old_address_stays_reserved_while_its_revert_link_lives(app, api, alice, smtp_sink):
    ask(api, alice, "moved@example.com")
    confirm(api, alice, mailed_code(app, smtp_sink, "moved@example.com"))
    api.register(email="alice@example.com", expect=409)
    days = timedelta(days=7, seconds=1)
    with time_machine.travel(now() + days):
        api.register(email="alice@example.com")  # the link has lapsed: the address is free


def test_a_taken_over_address_cannot_undo_the_owners_revert(app, api, alice, smtp_sink):
    """a -> b by an intruder, then b -> c: the owner reverts to a; b's later revert link is dead."""
    ask(api, alice, "b@example.com")
    confirm(api, alice, mailed_code(app, smtp_sink, "b@example.com"))
    to_a = revert_token(app, smtp_sink, "alice@example.com")
    ask(api, alice, "c@example.com")
    confirm(api, alice, mailed_code(app, smtp_sink, "c@example.com"))
    deliver(app)
    [notice_b] = smtp_sink.to("b@example.com", NOTICE)
    to_b = re.search(r"token=([A-Za-z0-9_\-]+)", text_of(notice_b)).group(1)
    assert api.post("/auth/email/revert", {"token": to_a}).status_code == 200
    problem(api.post("/auth/email/revert", {"token": to_b}), 400, "invalid_code")
    assert user_row(app, alice["id"]).email == "alice@example.com"


def test_concurrent_uses_of_one_revert_link_act_once(app, api, alice, smtp_sink, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    ask(api, alice, "twice@example.com")
    confirm(api, alice, mailed_code(app, smtp_sink, "twice@example.com"))
    token = revert_token(app, smtp_sink, "alice@example.com")
    statuses = at_once(app, 6, lambda client: client.post("/auth/email/revert", json={"token": token}).status_code)
    assert sorted(statuses) == [200] + [400] * 5
    assert len(kinds(app, alice["id"], "email_reverted")) == 1
