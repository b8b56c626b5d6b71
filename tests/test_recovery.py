"""Forgot and reset password: the flow end to end from the mailed code, and every way a code is refused."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select, update

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import OneTimeCode, OutboxMessage, RefreshToken, Session, User
from tests.actions import PASSWORD, problem
from tests.smtp import deliver, html_of, last_code, mail_settings, text_of

NEW_PASSWORD = "a brand new passphrase 42"
RESET = "Reset your Gatehouse password"


pytestmark = pytest.mark.mail


def forgot(api, email: str):
    return api.post("/auth/forgot-password", json={"email": email})


def reset(api, email: str, code: str, password: str = NEW_PASSWORD):
    return api.post("/auth/reset-password", json={"email": email, "code": code, "newPassword": password})


def reset_code(api, app, sink, email: str) -> str:
    assert forgot(api, email).status_code == 202
    deliver(app)
    return last_code(sink, email, RESET)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_reset_flow_end_to_end_from_the_mailed_code(app, api, smtp_sink):
    email = "reset@example.com"
    first = api.register(email=email)
    second = api.login(email=email)

    code = reset_code(api, app, smtp_sink, email)
    mail = smtp_sink.to(email, RESET)[-1]
    assert "10 minutes" in text_of(mail) and code in html_of(mail) and "Gatehouse" in html_of(mail)
    with app.app_context():
        row = db.session.scalars(select(OutboxMessage).where(OutboxMessage.template == "reset-password")).one()
        assert mail["Message-ID"] == f"<{row.id}@gatehouse.test>"
        assert row.status == "sent" and row.payload is None

    response = reset(api, email, code)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "ok"

    for signed_in in (first, second):  # every session and refresh token is dead
        problem(api.get("/auth/me", token=signed_in["tokens"]["accessToken"]), 401, "token_revoked")
        refreshed = api.post("/auth/refresh", json={"refreshToken": signed_in["tokens"]["refreshToken"]})
        assert refreshed.status_code == 401
    problem(api.post("/auth/login", json={"email": email, "password": PASSWORD}), 401, "invalid_credentials")
    api.login(email=email, password=NEW_PASSWORD)

    with app.app_context():
        user = db.session.scalars(select(User).where(User.email_key == email)).unique().one()
        sessions = db.session.scalars(select(Session).where(Session.user_id == user.id)).all()
        assert len(sessions) == 3 and sum(s.revoked_at is None for s in sessions) == 1  # the new sign-in
        revoked = [s.id for s in sessions if s.revoked_at is not None]
        live_tokens = db.session.scalars(select(RefreshToken).where(RefreshToken.session_id.in_(revoked),
                                                                    RefreshToken.revoked_at.is_(None))).all()
        assert live_tokens == []
        used = db.session.scalars(select(OneTimeCode).where(OneTimeCode.user_id == user.id,
                                                            OneTimeCode.purpose == "reset")).one()
        assert used.used_at is not None and used.code_hash != code

    deliver(app)
    notice = smtp_sink.to(email, "password was changed")
    assert len(notice) == 1 and "signed out" in text_of(notice[0])


def test_forgot_password_answers_the_same_whether_or_not_the_address_has_an_account(app, api):
    api.register(email="known@example.com")
    known = forgot(api, "known@example.com")
    unknown = forgot(api, "nobody@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.get_data() == unknown.get_data()
    skip = {"X-Request-Id", "Date"}
    assert ({k: v for k, v in known.headers if k not in skip}
            == {k: v for k, v in unknown.headers if k not in skip})
    with app.app_context():
        mails = db.session.scalars(select(OutboxMessage.recipient)
                                   .where(OutboxMessage.template == "reset-password")).all()
        assert mails == ["known@example.com"]


def test_a_weak_new_password_is_refused_and_the_code_stays_usable(app, api, smtp_sink):
    api.register(email="weak@example.com")
    code = reset_code(api, app, smtp_sink, "weak@example.com")
    for weak in ("password123", "weak@example.com and more"):
        body = problem(reset(api, "weak@example.com", code, weak), 422, "password_too_weak")
        assert [e["field"] for e in body["errors"]] == ["newPassword"]  # the body's own name
    assert reset(api, "weak@example.com", code).status_code == 200


def test_every_invalid_code_case_gives_the_same_invalid_code_answer(app, api, smtp_sink, make_config):
    email = "cases@example.com"
    api.register(email=email)
    bodies = []

    code = reset_code(api, app, smtp_sink, email)
    bodies.append(problem(reset(api, email, wrong(code)), 400, "invalid_code"))       # wrong
    bodies.append(problem(reset(api, "nobody@example.com", code), 400, "invalid_code"))  # unknown address
    assert reset(api, email, code).status_code == 200
    bodies.append(problem(reset(api, email, code, NEW_PASSWORD + "!"), 400, "invalid_code"))  # spent

    voided = reset_code(api, app, smtp_sink, email)
    newer = reset_code(api, app, smtp_sink, email)
    if voided != newer:  # one in a million the two codes are equal; then voiding cannot be told apart
        bodies.append(problem(reset(api, email, voided), 400, "invalid_code"))      # voided by a newer code

    with time_machine.travel(now() + timedelta(seconds=601), tick=False):
        bodies.append(problem(reset(api, email, newer), 400, "invalid_code"))      # expired
    assert all(body == bodies[0] for body in bodies)

    with app.app_context():  # a disabled account is refused the same way
        db.session.execute(update(User).where(User.email_key == email).values(disabled=True))
        db.session.commit()
    assert forgot(api, email).status_code == 202
    with app.app_context():
        pending = db.session.scalars(select(OutboxMessage).where(OutboxMessage.status == "pending")).all()
        assert pending == []


def test_a_code_is_dead_after_five_wrong_tries(app, api, smtp_sink):
    email = "tries@example.com"
    api.register(email=email)
    code = reset_code(api, app, smtp_sink, email)
    for _ in range(4):
        problem(reset(api, email, wrong(code)), 400, "invalid_code")
    with app.app_context():
        assert db.session.scalars(select(OneTimeCode.tries).where(OneTimeCode.purpose == "reset")).one() == 4
    problem(reset(api, email, wrong(code)), 400, "invalid_code")
    problem(reset(api, email, code), 400, "invalid_code")  # the right code, too late
    with app.app_context():
        row = db.session.scalars(select(OneTimeCode).where(OneTimeCode.purpose == "reset")).one()
        assert row.tries == 5 and row.used_at is None
    # A fresh code starts over.
    assert reset(api, email, reset_code(api, app, smtp_sink, email)).status_code == 200


def test_the_right_code_after_four_wrong_tries_still_works(app, api, smtp_sink):
    api.register(email="fifth@example.com")
    code = reset_code(api, app, smtp_sink, "fifth@example.com")
    for _ in range(4):
        problem(reset(api, "fifth@example.com", wrong(code)), 400, "invalid_code")
    assert reset(api, "fifth@example.com", code).status_code == 200


def test_a_reset_clears_the_password_lock(app, api, smtp_sink):
    email = "locked@example.com"
    api.register(email=email)
    with app.app_context():
        db.session.execute(update(User).where(User.email_key == email).values(password_locked_at=now()))
        db.session.commit()
    problem(api.post("/auth/login", json={"email": email, "password": PASSWORD}), 401, "invalid_credentials")
    assert reset(api, email, reset_code(api, app, smtp_sink, email)).status_code == 200
    api.login(email=email, password=NEW_PASSWORD)


def test_a_reset_ends_the_sign_in_backoff_of_the_account(make_app, smtp_sink):
    from tests.actions import Api

    fast = {"RATELIMIT_ENABLED": "1", "SIGNIN_FREE_FAILURES": "3", "SIGNIN_LOCKOUT_FAILURES": "8"}
    app = make_app(**mail_settings(smtp_sink), **fast)
    api = Api(app.test_client())
    email = "backoff@example.com"
    api.register(email=email)
    for _ in range(3):
        problem(api.post("/auth/login", json={"email": email, "password": "not it at all"}), 401,
                "invalid_credentials")
    problem(api.post("/auth/login", json={"email": email, "password": PASSWORD}), 429, "rate_limited")
    assert reset(api, email, reset_code(api, app, smtp_sink, email)).status_code == 200
    api.login(email=email, password=NEW_PASSWORD)


def _race(app, count: int, body: dict) -> list[int]:
    barrier = threading.Barrier(count)
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt():
        client = app.test_client()
        barrier.wait()
        status = client.post("/auth/reset-password", json=body).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=attempt) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def test_eight_concurrent_submissions_of_the_right_code_give_exactly_one_success(app, api, smtp_sink):
    email = "race@example.com"
    api.register(email=email)
    code = reset_code(api, app, smtp_sink, email)
    statuses = _race(app, 8, {"email": email, "code": code, "newPassword": NEW_PASSWORD})
    assert sorted(statuses) == [200] + [400] * 7
    with app.app_context():
        row = db.session.scalars(select(OneTimeCode).where(OneTimeCode.purpose == "reset")).one()
        assert row.used_at is not None
        notices = db.session.scalars(select(OutboxMessage).where(OutboxMessage.template == "password-changed"))
        assert len(notices.all()) == 1


def test_fifty_concurrent_wrong_guesses_evaluate_at_most_five(app, api, smtp_sink):
    email = "guess@example.com"
    api.register(email=email)
    code = reset_code(api, app, smtp_sink, email)
    statuses = _race(app, 50, {"email": email, "code": wrong(code), "newPassword": NEW_PASSWORD})
    assert statuses == [400] * 50
    with app.app_context():
        assert db.session.scalars(select(OneTimeCode.tries).where(OneTimeCode.purpose == "reset")).one() == 5
    problem(reset(api, email, code), 400, "invalid_code")
