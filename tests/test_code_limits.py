"""Per-account limits on one-time codes, whatever the client address: codes mailed per hour and
wrong codes per day across reissued codes (verification and reset alike), the auth bucket by IPv6
/64, and a reset that checks the code before the password policy."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import OneTimeCode, OutboxMessage, User
from tests.actions import PASSWORD, problem
from tests.concurrency import at_once
from tests.smtp import deliver, last_code, mail_settings

VERIFY = "Confirm your email address"
RESET = "Reset your Gatehouse password"
NEW_PASSWORD = "a brand new passphrase 42"
HOUR, DAY = 3600, 86400


pytestmark = pytest.mark.mail(ACCESS_TOKEN_TTL="7200")  # tokens outlive the hour


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def mails(app, template: str) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.template == template))


def codes(app, purpose: str) -> list[OneTimeCode]:
    with app.app_context():
        return db.session.scalars(select(OneTimeCode).where(OneTimeCode.purpose == purpose)
                                  .order_by(OneTimeCode.created_at)).all()


def tries(app, purpose: str) -> int:
    return sum(code.tries for code in codes(app, purpose))


def limited(response, retry_after: int) -> None:
    problem(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) == retry_after


def resend(api, token):
    return api.post("/auth/resend-verification", token=token)


def verify(api, token, code):
    return api.post("/auth/verify-email", json={"code": code}, token=token)


def forgot(api, email):
    return api.post("/auth/forgot-password", json={"email": email})


def reset(api, email, code, password=NEW_PASSWORD):
    return api.post("/auth/reset-password", json={"email": email, "code": code, "newPassword": password})


# ---- verification codes ----------------------------------------------------------------------------

def test_verification_codes_are_capped_at_five_an_hour_per_account(app, api):
    with time_machine.travel(now(), tick=False) as traveller:
        token = api.register(email="cap@example.com")["tokens"]["accessToken"]  # the first code
        for _ in range(3):
            assert resend(api, token).status_code == 202
        assert len(codes(app, "verify")) == 4  # limit - 1
        assert resend(api, token).status_code == 202
        assert len(codes(app, "verify")) == 5 and mails(app, "verify-email") == 5  # the limit
        limited(resend(api, token), HOUR)  # limit + 1: refused, nothing issued or queued
        assert len(codes(app, "verify")) == 5 and mails(app, "verify-email") == 5
        traveller.shift(timedelta(seconds=HOUR - 1))
        limited(resend(api, token), 1)
        traveller.shift(timedelta(seconds=1))  # the first five leave the window
        assert resend(api, token).status_code == 202
        assert len(codes(app, "verify")) == 6 and mails(app, "verify-email") == 6


def test_wrong_verification_codes_count_across_resent_codes(app, api, smtp_sink):
    with time_machine.travel(now(), tick=False) as traveller:
        token = api.register(email="guess@example.com")["tokens"]["accessToken"]
        deliver(app)
        first = last_code(smtp_sink, "guess@example.com", VERIFY)
        for _ in range(5):
            problem(verify(api, token, wrong(first)), 400, "invalid_code")
        assert resend(api, token).status_code == 202  # a new code does not bring new tries
        deliver(app)
        second = last_code(smtp_sink, "guess@example.com", VERIFY)
        for _ in range(4):
            problem(verify(api, token, wrong(second)), 400, "invalid_code")
        assert tries(app, "verify") == 9  # limit - 1
        assert resend(api, token).status_code == 202
        deliver(app)
        third = last_code(smtp_sink, "guess@example.com", VERIFY)
        problem(verify(api, token, wrong(third)), 400, "invalid_code")
        assert tries(app, "verify") == 10  # the limit
        limited(verify(api, token, third), DAY)  # limit + 1: even the right code is not compared
        assert tries(app, "verify") == 10
        with app.app_context():
            assert db.session.scalar(select(User.email_verified_at)) is None
        traveller.shift(timedelta(seconds=DAY))  # the window has passed (and the codes expired)
        token = api.login(email="guess@example.com")["tokens"]["accessToken"]
        assert resend(api, token).status_code == 202
        deliver(app)
        assert verify(api, token, last_code(smtp_sink, "guess@example.com", VERIFY)).status_code == 200


def test_the_portal_shares_the_verification_limits(app, api):
    from tests.test_portal import Portal

    with time_machine.travel(now(), tick=False):
        api.register(email="portal-cap@example.com")
        portal = Portal(app.test_client())
        portal.login("portal-cap@example.com")
        for _ in range(4):
            assert portal.submit("/verify-email", "/verify-email/resend").status_code == 302
        refused = portal.submit("/verify-email", "/verify-email/resend")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == HOUR
        assert mails(app, "verify-email") == 5


def test_concurrent_wrong_guesses_never_pass_the_daily_limit(app, api, smtp_sink, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    token = api.register(email="race@example.com")["tokens"]["accessToken"]
    deliver(app)
    first = last_code(smtp_sink, "race@example.com", VERIFY)
    for _ in range(5):
        verify(api, token, wrong(first))
    resend(api, token)
    deliver(app)
    second = last_code(smtp_sink, "race@example.com", VERIFY)
    for _ in range(3):
        verify(api, token, wrong(second))
    assert tries(app, "verify") == 8
    statuses = at_once(app, 20, lambda client: client.post(
        "/auth/verify-email", json={"code": wrong(second)}, headers={"Authorization": f"Bearer {token}"}).status_code)
    assert set(statuses) <= {400, 429}
    assert tries(app, "verify") == 10  # exactly the two left, never more


# ---- reset codes -------------------------------------------------------------------------------------

def test_reset_mails_are_capped_per_account_and_the_answer_never_changes(app, api):
    api.register(email="flood@example.com")
    with time_machine.travel(now(), tick=False) as traveller:
        answers = []
        for _ in range(4):
            answers.append(forgot(api, "flood@example.com").get_json())
        assert mails(app, "reset-password") == 4  # limit - 1
        answers.append(forgot(api, "flood@example.com").get_json())
        assert mails(app, "reset-password") == 5  # the limit
        capped = forgot(api, "flood@example.com")  # limit + 1: the same 202, no mail, no code
        assert capped.status_code == 202 and capped.get_json() == answers[0]
        assert all(answer == answers[0] for answer in answers)
        assert mails(app, "reset-password") == 5 and len(codes(app, "reset")) == 5
        traveller.shift(timedelta(seconds=HOUR))
        assert forgot(api, "flood@example.com").status_code == 202
        assert mails(app, "reset-password") == 6


def test_reset_mails_from_many_addresses_still_count_once_per_account(make_app, smtp_sink):
    from tests.actions import Api

    app = make_app(**mail_settings(smtp_sink), RATELIMIT_ENABLED="1")
    client = app.test_client()
    Api(client).register(email="many@example.com")
    for n in range(12):  # a new /64 every time: the auth bucket never sees the same client
        response = client.post("/auth/forgot-password", json={"email": "many@example.com"},
                               environ_base={"REMOTE_ADDR": f"2001:db8:{n}::1"})
        assert response.status_code == 202
    assert mails(app, "reset-password") == 5


def test_wrong_reset_codes_count_across_reissued_codes(app, api, smtp_sink):
    api.register(email="reset-guess@example.com")
    with time_machine.travel(now(), tick=False):
        for _ in range(2):
            forgot(api, "reset-guess@example.com")
            deliver(app)
            code = last_code(smtp_sink, "reset-guess@example.com", RESET)
            for _ in range(5):
                problem(reset(api, "reset-guess@example.com", wrong(code)), 400, "invalid_code")
        assert tries(app, "reset") == 10
        forgot(api, "reset-guess@example.com")
        deliver(app)
        code = last_code(smtp_sink, "reset-guess@example.com", RESET)
        limited(reset(api, "reset-guess@example.com", code), DAY)
        assert tries(app, "reset") == 10
    api.login(email="reset-guess@example.com", password=PASSWORD)  # the password did not change


def test_reset_checks_the_code_before_the_password_policy(app, api, smtp_sink):
    api.register(email="alice@example.com", username="wonderland")
    # A password holding the account's username: without the right code, the same invalid_code as
    # for any other address or password.
    for email, password in (("alice@example.com", "wonderland is my home"), ("bob@example.com", "wonderland is my home"),
                            ("alice@example.com", NEW_PASSWORD)):
        problem(reset(api, email, "123456", password), 400, "invalid_code")
    forgot(api, "alice@example.com")
    deliver(app)
    code = last_code(smtp_sink, "alice@example.com", RESET)
    problem(reset(api, "alice@example.com", code, "wonderland is my home"), 422, "password_too_weak")
    assert reset(api, "alice@example.com", code).status_code == 200  # the code stayed usable


# ---- the auth bucket by IPv6 /64 -----------------------------------------------------------------

def test_ipv6_clients_share_the_auth_bucket_of_their_64(make_app):
    app = make_app(RATELIMIT_ENABLED="1")
    client = app.test_client()

    emails = iter(range(100))

    def attempt(address: str):  # a new identifier each time: only the address bucket can refuse
        return client.post("/auth/login", json={"email": f"nobody{next(emails)}@example.com", "password": "not it"},
                           environ_base={"REMOTE_ADDR": address})

    for host in range(1, 10):  # limit - 1 addresses of one /64
        assert attempt(f"2001:db8:1:2::{host:x}").status_code == 401
    assert attempt("2001:db8:1:2:ffff:ffff:ffff:ffff").status_code == 401  # the limit
    problem(attempt("2001:db8:1:2:abcd::1"), 429, "rate_limited")  # limit + 1, yet another address
    assert attempt("2001:db8:1:3::1").status_code == 401  # the next /64 is another client
    for _ in range(10):
        assert attempt("10.1.2.3").status_code == 401
    problem(attempt("::ffff:10.1.2.3"), 429, "rate_limited")  # IPv4-mapped: the IPv4 address
