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


def test_a_refresh_is_its_spend_read_and_insert_and_one_commit(app, api, leg):
    """PostgreSQL: one statement of data-modifying CTEs; SQLite (no writes in a CTE): three."""
    tokens = api.register(email="chain@example.com")["tokens"]
    with recording(app) as seen:
        response = api.post("/auth/refresh", {"refreshToken": tokens["refreshToken"]})
    assert response.status_code == 200
    if leg == "postgres":
        assert seen.verbs() == ["WITH", "COMMIT"]
        assert seen.sql[0].startswith("WITH spent AS (UPDATE refresh_tokens SET spent_at=")
        assert "issued AS (INSERT INTO refresh_tokens" in seen.sql[0]
    else:
        assert seen.verbs() == ["UPDATE refresh_tokens", "SELECT sessions", "INSERT refresh_tokens", "COMMIT"]


def test_auth_me_is_one_read_and_writes_nothing_within_a_minute(app, api):
    access = api.register(email="me@example.com")["tokens"]["accessToken"]
    with recording(app) as seen:
        for _ in range(3):
            assert api.get("/auth/me", access).status_code == 200
    assert seen.verbs() == ["SELECT sessions"] * 3


def test_auth_me_on_postgresql_opens_no_transaction(app, api, leg):
    """The caller is read in autocommit (models/rows.read): psycopg sends no BEGIN before it, and
    the connection goes back to the pool with nothing to roll back: one round trip, not three."""
    if leg != "postgres":
        pytest.skip("SQLite starts no transaction for a read")
    from psycopg.pq import TransactionStatus
    from sqlalchemy import event

    from gatehouse.extensions import db

    access = api.register(email="autocommit@example.com")["tokens"]["accessToken"]
    seen = []

    def before(conn, _cursor, statement, *_):
        dbapi = conn.connection.dbapi_connection
        seen.append((dbapi.autocommit, dbapi.pgconn.transaction_status))

    def after(conn, _cursor, statement, *_):
        seen.append(conn.connection.dbapi_connection.pgconn.transaction_status)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for _ in range(3):
            assert api.get("/auth/me", access).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    assert seen == [(True, TransactionStatus.IDLE), TransactionStatus.IDLE] * 3


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
    # network lately (one statement of indexed look-ups, however many sessions it has). Its writes are
    # prepared statements sent as it goes (models/rows.py), with nothing left for a flush at the commit.
    assert seen.verbs() == ["SELECT users", "SELECT mfa_totp", "SELECT sessions",
                            "UPDATE users", "INSERT sessions", "INSERT refresh_tokens", "INSERT security_events",
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
                            "SELECT users", "SELECT sign_in_failures", "SELECT mfa_totp", "SELECT sessions", "DELETE sign_in_failures", "UPDATE users",
                            "INSERT sessions", "INSERT refresh_tokens", "INSERT security_events", "COMMIT"]


def test_a_row_written_at_once_is_the_sessions_loaded_object_and_refers_to_pending_rows(app):
    """models/rows.py: one INSERT, pending rows first; the object answers without another statement."""
    from sqlalchemy import inspect, select

    from gatehouse.extensions import db
    from gatehouse.models import SecurityEvent, User
    from gatehouse.models.rows import insert_row
    from gatehouse.models.types import new_id

    moment = now()
    with app.app_context():
        user = User(id=new_id(), email="rows@example.com", email_key="rows@example.com", role="user",
                    region="US", currency="USD", locale="en", timezone="UTC", show_status="visible",
                    disabled=False, password_hash="x", created_at=moment, updated_at=moment, version=1)
        db.session.add(user)  # pending: the event's foreign key needs it written first
        values = dict(id=new_id(), user_id=user.id, kind="signed_in", at=moment, ip_address=None, user_agent=None,
                      session_id=None, device_id=None, detail={"methods": ["pwd"]})
        with recording(app) as seen:
            event = insert_row(SecurityEvent, values, device=None)
            assert inspect(event).persistent and db.session.get(SecurityEvent, event.id) is event
            assert (event.kind, event.detail, event.device) == ("signed_in", {"methods": ["pwd"]}, None)
        assert seen.verbs() == ["INSERT users", "INSERT security_events"]
        with pytest.raises(ValueError, match="every column"):
            insert_row(SecurityEvent, {k: v for k, v in values.items() if k != "detail"})
        db.session.commit()
        db.session.expunge_all()
        assert db.session.scalar(select(SecurityEvent.kind).where(SecurityEvent.id == event.id)) == "signed_in"
