"""The `auth` bucket: 10 requests a minute per client address, shared by the /auth/ sign-in paths."""
from __future__ import annotations

import itertools
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import time_machine

from api.limits import AUTH_PATHS
from gatehouse.clock import now
from tests.actions import PASSWORD, problem
from tests.conftest import POSTGRES_LEG, REDIS_BIN
from tests.servers import Redis

ROOT = Path(__file__).resolve().parent.parent
_emails = itertools.count(1)


@pytest.fixture
def make_app(make_app):
    """Apps with rate limits on (and other settings), closed after the test."""
    return lambda **overrides: make_app(**{"RATELIMIT_ENABLED": "1", **overrides})


def body_for(path: str) -> dict:
    """A request each sign-in endpoint answers quickly, with an identifier never used before."""
    email = f"someone{next(_emails)}@example.com"
    if path == "/auth/login":
        return {"email": email, "password": "not the password"}
    if path == "/auth/register":
        return {"email": email, "password": PASSWORD}
    if path == "/auth/forgot-password":
        return {"email": email}
    return {"email": email, "code": "000000", "newPassword": PASSWORD}


def sign_in_paths(app) -> list[str]:
    """The bucket's paths that have an endpoint in this app (all four once every issue has landed)."""
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    return sorted(path for path in AUTH_PATHS if path in rules)


def hit(client, path: str = "/auth/login", addr: str = "10.0.0.1", headers: dict | None = None):
    return client.post(path, json=body_for(path), environ_base={"REMOTE_ADDR": addr}, headers=headers or {})


def assert_limited(response) -> None:
    problem(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == "10"
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_the_bucket_covers_the_sign_in_paths():
    assert AUTH_PATHS == {"/auth/login", "/auth/register", "/auth/forgot-password", "/auth/reset-password",
                          "/auth/mfa/verify", "/auth/passkey/login", "/auth/not-me", "/auth/email/revert"}


def test_ten_requests_then_429_across_the_sign_in_endpoints_together(make_app):
    app = make_app()
    client = app.test_client()
    paths = sign_in_paths(app)
    assert {"/auth/login", "/auth/register"} <= set(paths)
    for path in itertools.islice(itertools.cycle(paths), 10):
        response = hit(client, path)
        assert response.status_code != 429, path
        assert "Retry-After" not in response.headers  # only a 429 says when to retry
        assert response.headers["X-RateLimit-Limit"] == "10"
    for path in paths:
        assert_limited(hit(client, path))


def test_other_endpoints_are_outside_the_bucket(make_app):
    client = make_app().test_client()
    for _ in range(11):
        hit(client)
    problem(client.post("/auth/refresh", json={"refreshToken": "nope"}, environ_base={"REMOTE_ADDR": "10.0.0.1"}),
            401, "token_invalid")


def test_each_client_address_has_its_own_bucket(make_app):
    client = make_app().test_client()
    for _ in range(10):
        assert hit(client, addr="10.0.0.1").status_code == 401
    assert_limited(hit(client, addr="10.0.0.1"))
    assert hit(client, addr="10.0.0.2").status_code == 401


def test_x_forwarded_for_changes_nothing_without_trusted_proxies(make_app):
    client = make_app(TRUSTED_PROXIES="0").test_client()
    for n in range(10):
        assert hit(client, headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code == 401
    assert_limited(hit(client, headers={"X-Forwarded-For": "203.0.113.99"}))


def test_with_one_trusted_proxy_the_rightmost_forwarded_address_is_the_client(make_app):
    client = make_app(TRUSTED_PROXIES="1").test_client()
    for n in range(10):
        assert hit(client, headers={"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.7"}).status_code == 401
    assert_limited(hit(client, headers={"X-Forwarded-For": "198.51.100.99, 203.0.113.7"}))
    assert hit(client, headers={"X-Forwarded-For": "203.0.113.7, 203.0.113.8"}).status_code == 401


def test_the_window_moves(make_app):
    client = make_app().test_client()
    start = now()
    with time_machine.travel(start, tick=False) as traveller:
        for _ in range(5):
            assert hit(client).status_code == 401
        traveller.shift(timedelta(seconds=30))
        for _ in range(5):
            assert hit(client).status_code == 401
        assert_limited(hit(client))
        traveller.shift(timedelta(seconds=31))  # the first five have left the window, the last five not
        for _ in range(5):
            assert hit(client).status_code == 401
        assert_limited(hit(client))


def test_ratelimit_enabled_0_switches_the_bucket_off(make_app):
    client = make_app(RATELIMIT_ENABLED="0").test_client()
    for _ in range(15):
        response = hit(client)
        assert response.status_code == 401
        assert "X-RateLimit-Limit" not in response.headers


@pytest.mark.skipif(REDIS_BIN is None, reason="needs redis-server")
def test_redis_stopping_mid_way_keeps_requests_limited_and_never_500(make_app):
    redis = Redis(REDIS_BIN)
    redis.start()
    try:
        client = make_app(REDIS_URL=redis.url()).test_client()
        for _ in range(4):
            assert hit(client).status_code == 401
    finally:
        redis.stop()
    statuses = [hit(client).status_code for _ in range(12)]
    assert 500 not in statuses
    assert statuses[:10] == [401] * 10  # in-process storage takes over from an empty window
    assert statuses[10:] == [429, 429]
    assert_limited(hit(client))


# ---- two gunicorn processes sharing the bucket through Redis -----------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES_LEG, reason="needs PostgreSQL and Redis")
@pytest.mark.parametrize("leg", ["postgres"], indirect=True)
def test_gunicorn_processes_share_the_bucket_through_redis(serve, make_config):
    assert make_config()["REDIS_URL"]
    servers = [serve(processes=2, RATELIMIT_ENABLED="1") for _ in range(2)]
    for server in servers:
        deadline = time.monotonic() + 10
        while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(server.worker_pids()) == 2  # two processes each: four worker processes in all
    statuses = []
    with requests.Session() as http:
        for n in range(12):
            server = servers[n % 2]  # alternate between the two servers: no process sees more than six
            response = http.post(f"{server.url}/auth/login", timeout=10,
                                 json={"email": f"user{n}@example.com", "password": "not the password"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["code"] == "rate_limited"
                assert int(response.headers["Retry-After"]) >= 1
    assert statuses == [401] * 10 + [429, 429]
