"""Bulk seeding: users, sessions and refresh tokens written by the database itself, in seconds.

Each table is filled by one `INSERT … SELECT` over a recursive counter, on SQLite and PostgreSQL
alike, so a million rows never travel through Python. Every user shares one precomputed password
hash; ids, addresses and token hashes are derived from the row number, so they never collide with
rows a test or a benchmark creates itself (UUID version nibble 0, `.invalid` addresses).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from gatehouse.models.types import UTCDateTime

PREFIXES = {"users": "00000000-0000-0000-8000-", "sessions": "00000000-0000-0000-9000-",
            "refresh_tokens": "00000000-0000-0000-a000-", "devices": "00000000-0000-0000-b000-",
            "idempotency_keys": "00000000-0000-0000-c000-", "ws_tickets": "00000000-0000-0000-d000-",
            "one_time_codes": "00000000-0000-0000-e000-"}


def _pad(dialect: str, expr: str, width: int) -> str:
    if dialect == "postgresql":
        return f"lpad(({expr})::text, {width}, '0')"
    return f"substr('{'0' * width}' || ({expr}), -{width}, {width})"


def _id(dialect: str, table: str, expr: str) -> str:
    return f"'{PREFIXES[table]}' || {_pad(dialect, expr, 12)}"


def _insert(conn: Connection, count: int, sql: str, **params) -> None:
    if count <= 0:
        return
    counter = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
    statement = text(counter + sql).bindparams(
        *(bindparam(name, type_=UTCDateTime) for name, value in params.items() if isinstance(value, datetime)))
    conn.execute(statement, {"count": count, **params})


def seed(conn: Connection, *, users: int, sessions: int, refresh_tokens: int, password_hash: str,
         now: datetime, records: int = 0) -> None:
    """Add `users` accounts (with settings and subscription), `sessions` live sessions spread over
    them and `refresh_tokens` tokens spread over the sessions (every other one already spent);
    with `records`, as many devices, idempotency keys, sign-in counters, WebSocket tickets,
    one-time codes and rate-limit windows.

    Runs in the caller's transaction; the caller commits. Tables are analysed afterwards so the
    planner sees their real size.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")  # a bulk load, not a request
    user_id = _id(dialect, "users", "i")
    _insert(conn, users,
            "INSERT INTO users (id, email, email_key, username, username_key, region, currency, locale, timezone,"
            " role, show_status, disabled, password_hash, created_at, updated_at, version)"
            f" SELECT {user_id}, 'seed' || i || '@seed.invalid', 'seed' || i || '@seed.invalid',"
            " 'seed' || i, 'seed' || i, 'US', 'USD', 'en', 'UTC', 'user', 'visible', false, :hash, :now, :now, 1"
            " FROM n", hash=password_hash, now=now)
    _insert(conn, users, f"INSERT INTO user_settings (user_id, preferences, updated_at) SELECT {user_id},"
                         " '{}', :now FROM n", now=now)
    _insert(conn, users, f"INSERT INTO subscriptions (user_id, tier, status, updated_at) SELECT {user_id},"
                         " 'free', 'active', :now FROM n", now=now)
    owner = _id(dialect, "users", f"(i % {max(users, 1)}) + 1")
    _insert(conn, sessions,
            "INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at, ip_address, user_agent)"
            f" SELECT {_id(dialect, 'sessions', 'i')}, {owner}, 'api', :now, :now, :expires, '127.0.0.1', 'seed'"
            " FROM n", now=now, expires=now + timedelta(days=30))
    session = _id(dialect, "sessions", f"(i % {max(sessions, 1)}) + 1")
    spent = "CASE WHEN i % 2 = 0 THEN :now END"
    _insert(conn, refresh_tokens,
            "INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, spent_at)"
            f" SELECT {_id(dialect, 'refresh_tokens', 'i')}, {session}, {_pad(dialect, 'i', 64)}, :now, {spent}"
            " FROM n", now=now)
    _records(conn, records, owner, session, now)
    conn.execute(text("ANALYZE"))


def _records(conn: Connection, count: int, owner: str, session: str, now: datetime) -> None:
    dialect = conn.dialect.name
    later = now + timedelta(days=1)
    _insert(conn, count, "INSERT INTO devices (id, user_id, client_id, name, platform, created_at, last_seen_at)"
                         f" SELECT {_id(dialect, 'devices', 'i')}, {owner}, 'seed' || i, 'seed', 'ios', :now, :now"
                         " FROM n", now=now)
    _insert(conn, count, "INSERT INTO idempotency_keys (id, key, caller, method, path, body_hash, state, encrypted,"
                         f" created_at, expires_at) SELECT {_id(dialect, 'idempotency_keys', 'i')}, 'seed' || i,"
                         f" 'addr:seed', 'POST', '/auth/login', {_pad(dialect, 'i', 64)}, 'done', false, :now,"
                         " :later FROM n", now=now, later=later)
    _insert(conn, count, "INSERT INTO sign_in_failures (identifier_hash, failures, updated_at)"
                         f" SELECT {_pad(dialect, 'i', 64)}, 1, :now FROM n", now=now)
    _insert(conn, count, "INSERT INTO ws_tickets (id, ticket_hash, session_id, expires_at)"
                         f" SELECT {_id(dialect, 'ws_tickets', 'i')}, {_pad(dialect, 'i', 64)}, {session}, :later"
                         " FROM n", later=later)
    _insert(conn, count, "INSERT INTO one_time_codes (id, user_id, purpose, code_hash, expires_at, tries,"
                         f" created_at) SELECT {_id(dialect, 'one_time_codes', 'i')}, {owner}, 'verify',"
                         f" {_pad(dialect, 'i', 64)}, :later, 0, :now FROM n", now=now, later=later)
    _insert(conn, count, "INSERT INTO rate_limit_windows (key, hits, expires_at) SELECT 'seed/' || i, '[]', :until"
                         " FROM n", until=later.timestamp())
