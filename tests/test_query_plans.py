"""Every query of the hot paths finds its rows through an index, on a database seeded large.

The hot paths are run for real (sign-in, token check, /auth/me, refresh and its reuse path,
Idempotency-Key replay, sign-in counters, the WebSocket ticket handshake, the WebSocket bearer
handshake and the batched re-check of many sockets' sessions); every statement they
send is then explained with its own parameters. SQLite must not `SCAN` a table (only `SEARCH`
through an index); PostgreSQL, with the tables seeded and analysed so that a sequential scan
would be chosen where no index serves, must not plan a `Seq Scan`.
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine

from bench.seed import PREFIXES, seed
from gatehouse.clock import now
from gatehouse.extensions import db
from tests.actions import PASSWORD, Api, bearer
from tests.statements import recording

TABLES = {"users", "user_settings", "subscriptions", "sessions", "refresh_tokens", "devices", "idempotency_keys",
          "sign_in_failures", "ws_tickets", "one_time_codes", "outbox", "rate_limit_windows", "presence_connections"}


def run_hot_paths(app) -> dict[str, list[tuple[str, object]]]:
    """The statements of each hot path, by name."""
    from gatehouse.services import sessions, ws_tickets

    api = Api(app.test_client())
    email = "runner@example.com"
    signed_up = api.register(email=email, username="runner")
    paths = {}

    def path(name):
        def wrap(action):
            with recording(app) as seen:
                action()
            assert seen.statements, name
            paths[name] = seen.statements
        return wrap

    @path("login by email, new device")
    def _():
        api.login(email=email, device={"id": "phone-1", "name": "Phone", "platform": "ios"})

    @path("login by username, known device")
    def _():
        api.login(username="runner", device={"id": "phone-1", "name": "Phone", "platform": "ios"})

    @path("failed login: sign-in counters")
    def _():
        api.login(email=email, password="not the password at all", expect=401)
        api.login(email=email)  # the success resets the counter

    tokens = api.login(email=email)["tokens"]

    @path("access token check and /auth/me")
    def _():
        assert api.get("/auth/me", tokens["accessToken"]).status_code == 200

    @path("/auth/me renewing lastSeenAt")
    def _():
        with time_machine.travel(now() + timedelta(minutes=2)):
            assert api.get("/auth/me", tokens["accessToken"]).status_code == 200

    @path("refresh: spend and issue")
    def _():
        response = api.post("/auth/refresh", {"refreshToken": tokens["refreshToken"]})
        assert response.status_code == 200

    @path("refresh: a spent token again")
    def _():
        assert api.post("/auth/refresh", {"refreshToken": tokens["refreshToken"]}).status_code == 401

    @path("Idempotency-Key: claim, then replay")
    def _():
        for _ in range(2):
            response = api.post("/auth/login", {"email": email, "password": PASSWORD},
                                headers={"Idempotency-Key": "plan-key"})
            assert response.status_code == 200

    access = signed_up["tokens"]["accessToken"]

    @path("WebSocket handshake: ticket issued and redeemed")
    def _():
        response = api.post("/auth/ws-ticket", token=access)
        assert response.status_code == 201
        with app.app_context():
            ws_tickets.redeem(response.get_json()["ticket"], now())
            db.session.remove()

    @path("WebSocket handshake: a bearer token's session member")
    def _():
        with app.app_context():
            member = sessions.verify(access, now())[0]
            db.session.remove()
        assert member.user_id == signed_up["user"]["id"]

    @path("WebSocket re-check: 50 sessions in one statement")
    def _():
        seeded = [f"{PREFIXES['sessions']}{n:012d}" for n in range(1, 51)]
        with app.app_context():
            roles = sessions.live_roles(seeded, now())
            db.session.remove()
        assert len(roles) == 50

    assert api.client.get("/users/me", headers=bearer(access)).status_code == 200
    return paths


def full_scans(conn, statement: str, parameters) -> list[str]:
    """The plan lines that read a whole table."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        lines = [row[-1] for row in rows]
        return [line for line in lines
                if (m := re.match(r"SCAN (\w+)", line)) and m.group(1) in TABLES]
    lines = [row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()]
    return [line.strip() for line in lines
            if (m := re.search(r"Seq Scan on (\w+)", line)) and m.group(1) in TABLES]


@pytest.fixture
def seeded_app(make_app):
    # Counters in the database (no Redis), so their statements are planned too.
    app = make_app(RATELIMIT_ENABLED="1", REDIS_URL="")
    with app.app_context():
        with db.engine.begin() as conn:
            seed(conn, users=20_000, sessions=50_000, refresh_tokens=50_000, records=20_000,
                 password_hash="$argon2id$v=19$m=1024,t=1,p=1$c2VlZHNlZWQ$c2VlZHNlZWRzZWVkc2VlZA", now=now())
        db.session.remove()
    return app


def test_no_hot_path_query_reads_a_whole_table(seeded_app):
    paths = run_hot_paths(seeded_app)
    explained, scans = 0, {}
    with seeded_app.app_context(), db.engine.connect() as conn:
        for name, statements in paths.items():
            for statement, parameters in statements:
                if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")):
                    continue
                explained += 1
                found = full_scans(conn, statement, parameters)
                if found:
                    scans.setdefault(name, []).append((" ".join(statement.split())[:300], found))
    assert scans == {}
    assert len(paths) == 11 and explained >= 32


def test_the_check_sees_a_lookup_that_no_index_serves(seeded_app):
    """The seeded size is large enough that each planner reads a whole table where no index helps."""
    with seeded_app.app_context(), db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        statement = ("SELECT id FROM sessions WHERE user_agent = ?" if sqlite
                     else "SELECT id FROM sessions WHERE user_agent = %(agent)s")
        found = full_scans(conn, statement, ("seed",) if sqlite else {"agent": "seed"})
    assert len(found) == 1 and "sessions" in found[0]
