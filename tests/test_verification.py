"""Email verification: registration mails the first code, verify-email, resend-verification."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import OneTimeCode, OutboxMessage, User
from gatehouse.realtime.bus import bus
from tests.actions import problem
from tests.smtp import deliver, last_code, text_of

VERIFY = "Confirm your email address"


pytestmark = pytest.mark.mail


def verify(api, token: str, code: str):
    return api.post("/auth/verify-email", json={"code": code}, token=token)


def resend(api, token: str):
    return api.post("/auth/resend-verification", token=token)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_registration_mails_a_code_that_verifies_the_address(app, api, smtp_sink):
    events = []
    with app.app_context():
        bus().subscribe(lambda user_id, event, data: events.append((user_id, event, data)))
    signed_up = api.register(email="verify@example.com")
    assert signed_up["user"]["emailVerified"] is False
    with app.app_context():  # written in the registration's own transaction
        row = db.session.scalars(select(OutboxMessage)).one()
        assert (row.template, row.recipient, row.status) == ("verify-email", "verify@example.com", "pending")
        assert row.expires_at is not None
    deliver(app)
    mail = smtp_sink.to("verify@example.com", VERIFY)[0]
    assert "expires in 1 day" in text_of(mail)
    code = last_code(smtp_sink, "verify@example.com", VERIFY)

    token = signed_up["tokens"]["accessToken"]
    response = verify(api, token, code)
    assert response.status_code == 200, response.get_json()
    user = response.get_json()["user"]
    assert user["emailVerified"] is True and user["version"] == signed_up["user"]["version"] + 1
    assert events[-1] == (user["id"], "entity:updated", {"entity": "user", "id": user["id"],
                                                         "version": user["version"], "fields": ["emailVerified"]})
    with app.app_context():
        stored = db.session.get(User, user["id"])
        assert stored.email_verified_at is not None and stored.version == user["version"]
    assert api.get("/auth/me", token=token).get_json()["user"]["emailVerified"] is True

    again = verify(api, token, code)  # a retry whose first answer was lost: the same user, no bump
    assert again.status_code == 200 and again.get_json()["user"]["version"] == user["version"]


def test_a_registration_that_fails_mails_nothing(app, api):
    api.register(email="taken@example.com")
    api.register(email="taken@example.com", expect=409)
    with app.app_context():
        assert len(db.session.scalars(select(OutboxMessage)).all()) == 1


def test_wrong_and_expired_codes_are_refused(app, api, smtp_sink):
    signed_up = api.register(email="refused@example.com")
    token = signed_up["tokens"]["accessToken"]
    deliver(app)
    code = last_code(smtp_sink, "refused@example.com", VERIFY)
    problem(verify(api, token, wrong(code)), 400, "invalid_code")
    problem(verify(api, "", code), 401, "token_invalid")
    problem(api.post("/auth/verify-email", json={"code": "12ab56"}, token=token), 422, "validation_failed")
    with time_machine.travel(now() + timedelta(hours=24, seconds=1), tick=False):
        login = api.login(email="refused@example.com")  # the first token has expired by then
        problem(verify(api, login["tokens"]["accessToken"], code), 400, "invalid_code")
    with app.app_context():
        assert db.session.scalars(select(User.email_verified_at)).one() is None


def test_another_users_code_does_not_verify(app, api, smtp_sink):
    mine = api.register(email="mine@example.com")
    other = api.register(email="theirs@example.com")
    deliver(app)
    theirs = last_code(smtp_sink, "theirs@example.com", VERIFY)
    while theirs == last_code(smtp_sink, "mine@example.com", VERIFY):  # one chance in a million: draw again
        resend(api, other["tokens"]["accessToken"])
        deliver(app)
        theirs = last_code(smtp_sink, "theirs@example.com", VERIFY)
    problem(verify(api, mine["tokens"]["accessToken"], theirs), 400, "invalid_code")


def test_resend_mails_a_fresh_code_and_voids_the_old_one(app, api, smtp_sink):
    signed_up = api.register(email="resend@example.com")
    token = signed_up["tokens"]["accessToken"]
    deliver(app)
    old = last_code(smtp_sink, "resend@example.com", VERIFY)

    response = resend(api, token)
    assert response.status_code == 202 and response.get_json()["status"] == "accepted"
    deliver(app)
    assert len(smtp_sink.to("resend@example.com", VERIFY)) == 2
    new = last_code(smtp_sink, "resend@example.com", VERIFY)
    while new == old:  # one chance in a million: draw again, so the old code can be tried
        resend(api, token)
        deliver(app)
        new = last_code(smtp_sink, "resend@example.com", VERIFY)
    problem(verify(api, token, old), 400, "invalid_code")
    assert verify(api, token, new).status_code == 200
    sent = len(smtp_sink.to("resend@example.com", VERIFY))
    with app.app_context():
        codes = db.session.scalars(select(OneTimeCode).where(OneTimeCode.purpose == "verify")).all()
        assert len(codes) == sent and sum(c.used_at is not None for c in codes) == 1

    assert resend(api, token).status_code == 202  # verified already: nothing more is mailed
    deliver(app)
    assert len(smtp_sink.to("resend@example.com", VERIFY)) == sent


def test_resend_before_delivery_expires_the_older_pending_mail(app, api):
    signed_up = api.register(email="pending@example.com")
    assert resend(api, signed_up["tokens"]["accessToken"]).status_code == 202
    with app.app_context():
        rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at)).all()
        assert sorted(r.status for r in rows) == ["expired", "pending"]
        assert all(r.payload is None for r in rows if r.status == "expired")


def test_resend_needs_a_bearer_token(api):
    problem(api.post("/auth/resend-verification"), 401, "token_invalid")


def test_a_reset_code_does_not_verify_the_address(app, api, smtp_sink):
    signed_up = api.register(email="purpose@example.com")
    api.post("/auth/forgot-password", json={"email": "purpose@example.com"})
    deliver(app)
    reset_code = last_code(smtp_sink, "purpose@example.com", "Reset your Gatehouse password")
    while reset_code == last_code(smtp_sink, "purpose@example.com", VERIFY):  # one chance in a million
        api.post("/auth/forgot-password", json={"email": "purpose@example.com"})
        deliver(app)
        reset_code = last_code(smtp_sink, "purpose@example.com", "Reset your Gatehouse password")
    problem(verify(api, signed_up["tokens"]["accessToken"], reset_code), 400, "invalid_code")
