"""Per-identifier sign-in backoff and lockout (NIST SP 800-63B §5.2.2), on whatever store the leg has."""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import redis
import time_machine
from sqlalchemy import func, select

from gatehouse.clock import now
from gatehouse.errors import InvalidCredentials, RateLimited
from gatehouse.extensions import db
from gatehouse.models import SignInFailure, User
from gatehouse.services import accounts, throttle
from tests.actions import PASSWORD, problem

WRONG = "not the password at all"
# Fast thresholds: 3 free failures, waits of 30, 60, 120, 120... seconds, locked at 8.
FAST = {"SIGNIN_FREE_FAILURES": "3", "SIGNIN_BACKOFF_BASE": "30", "SIGNIN_BACKOFF_MAX": "120",
        "SIGNIN_LOCKOUT_FAILURES": "8"}
_addresses = (f"10.{n // 250}.{n % 250}.1" for n in itertools.count(1))


@pytest.fixture
def make_app(make_app):
    """Apps with rate limits on (and other settings), closed after the test."""
    return lambda **overrides: make_app(**{"RATELIMIT_ENABLED": "1", **overrides})


def login(client, password: str = WRONG, **identifier):
    """A sign-in from a new client address each time: the per-address bucket never interferes, and
    every test here is the distributed case (one identifier, many addresses)."""
    identifier = identifier or {"email": "ann@example.com"}
    return client.post("/auth/login", json={**identifier, "password": password},
                       environ_base={"REMOTE_ADDR": next(_addresses)})


def register(client, email: str = "ann@example.com", **fields) -> dict:
    response = client.post("/auth/register", json={"email": email, "password": PASSWORD, **fields},
                           environ_base={"REMOTE_ADDR": next(_addresses)})
    assert response.status_code == 201
    return response.get_json()


def waiting(response, seconds: int) -> None:
    problem(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) == seconds


def locked_at(app, email: str = "ann@example.com"):
    with app.app_context():
        return db.session.scalar(select(User.password_locked_at).where(User.email_key == email))


def stored_failures(app, leg: str, identifier: str) -> int | None:
    """The counter as the store holds it: Redis on the postgres leg, the database table otherwise."""
    with app.app_context():
        # An account's failures are counted under the account, an unknown identifier's under itself.
        user = db.session.execute(select(User).where(User.email_key == identifier)).unique().scalar_one_or_none()
        key = throttle._key(identifier, user)
        if leg == "postgres":
            with redis.Redis.from_url(app.config["REDIS_URL"]) as client:
                value = client.hget(f"gatehouse:sign-in:{key}", "failures")
            return None if value is None else int(value)
        return db.session.scalar(select(SignInFailure.failures).where(SignInFailure.identifier_hash == key))


def test_free_failures_then_a_growing_wait_then_lockout(make_app, leg):
    app = make_app(**FAST)
    client = app.test_client()
    register(client)
    with time_machine.travel(now(), tick=False) as traveller:
        for _ in range(3):
            problem(login(client), 401, "invalid_credentials")
        assert stored_failures(app, leg, "ann@example.com") == 3
        waiting(login(client, PASSWORD), 30)  # even the right password is not checked while waiting
        assert stored_failures(app, leg, "ann@example.com") == 3  # and the wait does not count
        traveller.shift(timedelta(seconds=29))
        waiting(login(client), 1)
        for expected_wait in (60, 120, 120, 120):  # failures 4 to 7
            traveller.shift(timedelta(seconds=121))
            problem(login(client), 401, "invalid_credentials")
            waiting(login(client), expected_wait)
        assert locked_at(app) is None
        traveller.shift(timedelta(seconds=121))
        problem(login(client), 401, "invalid_credentials")  # the 8th: the password is locked
        assert locked_at(app) is not None
        traveller.shift(timedelta(seconds=121))
        problem(login(client, PASSWORD), 401, "invalid_credentials")  # locked: the right password fails too


def test_a_success_resets_the_count(make_app, leg):
    app = make_app(**FAST)
    client = app.test_client()
    register(client)
    with time_machine.travel(now(), tick=False) as traveller:
        for _ in range(3):
            problem(login(client), 401, "invalid_credentials")
        traveller.shift(timedelta(seconds=31))
        assert login(client, PASSWORD).status_code == 200
        assert stored_failures(app, leg, "ann@example.com") is None
        for _ in range(3):  # three free failures again
            problem(login(client), 401, "invalid_credentials")
        waiting(login(client), 30)


def test_unknown_identifiers_and_usernames_are_throttled_alike(make_app):
    app = make_app(**FAST)
    client = app.test_client()
    register(client, username="ann")
    for _ in range(3):
        problem(login(client, email="nobody@example.com"), 401, "invalid_credentials")
        problem(login(client, username="ANN"), 401, "invalid_credentials")
    waiting(login(client, email="nobody@example.com"), 30)
    waiting(login(client, username="ann"), 30)  # the normalised username: one counter whatever the case
    waiting(login(client, PASSWORD), 30)  # the email names the same account: the same counter
    assert login(client, PASSWORD, email="other@example.com").status_code == 401  # another identifier


@pytest.mark.parametrize("by_email, by_username, refused", [(1, 1, False), (2, 1, True), (2, 2, True)])
def test_an_accounts_email_and_username_share_one_count(make_app, leg, by_email, by_username, refused):
    """Free failures are per account once the identifier names one: FAST gives 3 in all, not 3 + 3."""
    app = make_app(**FAST)
    client = app.test_client()
    register(client, username="ann")
    with time_machine.travel(now(), tick=False):
        for _ in range(by_email):
            problem(login(client), 401, "invalid_credentials")
        for _ in range(by_username):
            outcome = login(client, username="Ann")
            if outcome.status_code == 429:
                break
            problem(outcome, 401, "invalid_credentials")
        counted = min(by_email + by_username, 3)
        assert stored_failures(app, leg, "ann@example.com") == counted
        with app.app_context():  # nothing under the identifiers themselves
            for identifier in ("ann@example.com", "ann"):
                key = throttle._key(identifier)
                if leg == "postgres":
                    with redis.Redis.from_url(app.config["REDIS_URL"]) as store:
                        assert not store.exists(f"gatehouse:sign-in:{key}")
                else:
                    assert db.session.get(SignInFailure, key) is None
        answer = login(client, PASSWORD, username="ann")
        if refused:
            waiting(answer, 30)
            waiting(login(client, PASSWORD), 30)
        else:
            assert answer.status_code == 200


def test_current_password_checks_count_against_the_email(make_app):
    app = make_app(**FAST)
    client = app.test_client()
    user_id = register(client)["user"]["id"]
    with app.test_request_context():
        user = db.session.get(User, user_id)
        for _ in range(3):
            with pytest.raises(InvalidCredentials):
                accounts.verify_current_password(user, WRONG, now())
        with pytest.raises(RateLimited) as refused:
            accounts.verify_current_password(user, PASSWORD, now())
        assert refused.value.retry_after == 30
    waiting(login(client, PASSWORD), 30)


def test_clear_forgets_the_failures_and_unlock_lifts_the_lock(make_app, leg):
    app = make_app(**FAST)
    client = app.test_client()
    user_id = register(client, username="ann")["user"]["id"]
    with time_machine.travel(now(), tick=False) as traveller:
        for _ in range(8):
            problem(login(client), 401, "invalid_credentials")
            traveller.shift(timedelta(seconds=121))
        assert locked_at(app) is not None
        with app.test_request_context():
            user = db.session.get(User, user_id)
            throttle.unlock(user)  # what a password reset does
            db.session.commit()
        assert locked_at(app) is None
        assert stored_failures(app, leg, "ann@example.com") is None
        assert login(client, PASSWORD).status_code == 200


def test_ratelimit_enabled_0_switches_the_backoff_off(make_app, leg):
    app = make_app(RATELIMIT_ENABLED="0", **FAST)
    client = app.test_client()
    register(client)
    for _ in range(12):
        problem(login(client), 401, "invalid_credentials")
    assert login(client, PASSWORD).status_code == 200
    assert stored_failures(app, leg, "ann@example.com") is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SignInFailure)) == 0


def test_the_real_numbers(make_app):
    """10 free failures, waits of 30 s doubling to 1 h, the password locked at the 100th failure."""
    app = make_app()
    client = app.test_client()
    register(client)
    with time_machine.travel(now(), tick=False) as traveller:
        for _ in range(10):
            problem(login(client), 401, "invalid_credentials")
        for failures in range(10, 100):
            wait = min(30 * 2 ** (failures - 10), 3600)
            waiting(login(client), wait)
            traveller.shift(timedelta(seconds=wait))
            problem(login(client), 401, "invalid_credentials")
            assert (locked_at(app) is not None) == (failures + 1 >= 100)
        traveller.shift(timedelta(hours=1))
        problem(login(client, PASSWORD), 401, "invalid_credentials")


def test_the_purge_forgets_counters_left_alone_for_30_days(make_app):
    app = make_app()
    client = app.test_client()
    problem(login(client, email="nobody@example.com"), 401, "invalid_credentials")
    with app.app_context():
        assert throttle.purge(now() + timedelta(days=29)) == 0
        assert throttle.purge(now() + timedelta(days=31)) == (0 if app.config["REDIS_URL"] else 1)
