"""What each hot request sends to the database: no statement more than its work needs.

Counted from the engine (tests/statements.py), so an added look-up, a lazy load or a second
commit on these paths fails here before it shows in a benchmark.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from gatehouse.clock import now
from tests.actions import PASSWORD
from tests.statements import recording


def test_a_refresh_is_one_spend_one_read_one_insert_and_one_commit(app, api):
    tokens = api.register(email="chain@example.com")["tokens"]
    with recording(app) as seen:
        response = api.post("/auth/refresh", {"refreshToken": tokens["refreshToken"]})
    assert response.status_code == 200
    assert seen.verbs() == ["UPDATE refresh_tokens", "SELECT sessions", "INSERT refresh_tokens", "COMMIT"]


def test_auth_me_is_one_read_and_writes_nothing_within_a_minute(app, api):
    access = api.register(email="me@example.com")["tokens"]["accessToken"]
    with recording(app) as seen:
        for _ in range(3):
            assert api.get("/auth/me", access).status_code == 200
    assert seen.verbs() == ["SELECT sessions"] * 3


@pytest.mark.parametrize("path", ["/auth/me", "/users/me"])
def test_a_read_of_the_caller_renews_last_seen_with_one_update_once_a_minute(app, api, path):
    access = api.register(email="seen@example.com")["tokens"]["accessToken"]
    for minutes, expected in [(0.9, ["SELECT sessions"]), (1, ["SELECT sessions", "UPDATE sessions", "COMMIT"])]:
        with time_machine.travel(now() + timedelta(minutes=minutes)), recording(app) as seen:
            assert api.get(path, access).status_code == 200
        assert seen.verbs() == expected, minutes


def test_a_login_is_one_read_and_its_writes_in_one_commit(app, api):
    api.register(email="login@example.com")
    with recording(app) as seen:
        api.login(email="login@example.com")
    # The account, its second factors (one statement), and whether it signed in from this device or
    # network lately (one statement of indexed look-ups, however many sessions it has).
    assert seen.verbs() == ["SELECT users", "SELECT mfa_totp", "SELECT sessions",
                            "INSERT security_events", "UPDATE users", "INSERT sessions", "INSERT refresh_tokens",
                            "COMMIT"]


def test_a_login_without_redis_adds_only_the_keyed_statements_of_its_limits(make_app):
    """The auth bucket's window (its own short transaction) and the account's sign-in counter, each by key."""
    app = make_app(RATELIMIT_ENABLED="1", REDIS_URL="")
    client = app.test_client()
    assert client.post("/auth/register", json={"email": "count@example.com", "password": PASSWORD}).status_code == 201
    with recording(app) as seen:
        response = client.post("/auth/login", json={"email": "count@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert seen.verbs() == ["INSERT rate_limit_windows", "UPDATE rate_limit_windows", "COMMIT",
                            "SELECT users", "SELECT sign_in_failures", "SELECT mfa_totp", "SELECT sessions", "DELETE sign_in_failures", "INSERT security_events", "UPDATE users",
                            "INSERT sessions", "INSERT refresh_tokens", "COMMIT"]
