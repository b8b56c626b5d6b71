"""Engine set-up per dialect (SQLite pragmas, PostgreSQL time-outs) and the readiness probe."""
from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from gatehouse.extensions import db


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def engine_options(uri: str) -> dict:
    if uri.startswith("sqlite"):
        return {"connect_args": {"timeout": 10, "check_same_thread": False}}
    # No pre-ping (it doubles the round trips of every request); connections are recycled instead,
    # and a connection the server dropped invalidates the pool at its first error (answered 503).
    return {
        "pool_recycle": 300,
        "pool_size": 10,
        "max_overflow": 10,
        "connect_args": {"connect_timeout": 5},
    }


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


READY_TIMEOUT = 1.0
_probes = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz")


def _select_one(engine) -> bool:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET statement_timeout = 1000"))
        conn.execute(text("SELECT 1"))
        if conn.dialect.name == "postgresql":
            conn.execute(text("RESET statement_timeout"))
    return True


def database_ready() -> bool:
    """True when the database answers a trivial query within a second, connecting included
    (an unreachable host would otherwise hold the probe for the whole connect time-out)."""
    probe = _probes.submit(_select_one, db.engine)
    try:
        return probe.result(timeout=READY_TIMEOUT)
    except Exception:
        return False


def redis_client(url: str):
    """A Redis client that gives up within about a second, so a Redis outage never hangs a request."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, health_check_interval=30)


def redis_ready(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
