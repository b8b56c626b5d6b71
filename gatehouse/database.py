"""Engine set-up per dialect (SQLite pragmas, PostgreSQL time-outs), the bound on every database call,
and the readiness probe.

Every call is bounded by DATABASE_TIMEOUT: connecting (libpq's connect_timeout, measured by the
client), waiting for a pooled connection (pool_timeout), each statement on the server
(statement_timeout), and a statement whose server stopped answering altogether: a frozen server still
acknowledges TCP, so neither keepalives nor TCP_USER_TIMEOUT fire; the Watchdog below shuts such a
connection's socket a second after the server's own bound, and the request gets a 503.
"""
from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from gatehouse.extensions import db

log = logging.getLogger(__name__)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The busy timeout is sqlite3's own `timeout` (engine_options): DATABASE_TIMEOUT.
        cursor.close()


def engine_options(uri: str, timeout: int) -> dict:
    """`timeout` (DATABASE_TIMEOUT, seconds) bounds connecting, waiting for the pool and each statement."""
    if uri.startswith("sqlite"):
        # sqlite3's timeout is its busy timeout: how long a writer waits for another's lock.
        options = {"connect_args": {"timeout": timeout, "check_same_thread": False}}
        if uri not in ("sqlite://", "sqlite:///:memory:"):  # an in-memory database has no pool to wait on
            options["pool_timeout"] = timeout
        return options
    # No pre-ping (it doubles the round trips of every request); connections are recycled instead,
    # and a connection the server dropped invalidates the pool at its first error (answered 503).
    return {
        "pool_recycle": 300,
        "pool_size": 10,
        "max_overflow": 10,
        "pool_timeout": timeout,
        "connect_args": {"connect_timeout": timeout, "options": f"-c statement_timeout={timeout * 1000}"},
    }


# Execution options of a connection the watchdog leaves alone (migrations).
UNBOUNDED = {"gatehouse_unbounded": True}


class Watchdog:
    """Shuts the socket of a PostgreSQL connection whose statement has gone unanswered past its engine's
    limit; the blocked call then fails at once (OperationalError, answered 503) and the pool drops the
    connection. One per process, whatever the number of engines, with one thread; a statement only
    arms and disarms an entry of a dict."""

    TICK = 0.25

    def __init__(self):
        self._armed: dict[int, tuple[float, object, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def install(self, engine: Engine, limit: float) -> None:
        def arm(conn, *_statement) -> None:
            self.arm(conn, limit)

        event.listen(engine, "before_cursor_execute", arm)
        event.listen(engine, "after_cursor_execute", lambda conn, *_statement: self.disarm(conn))
        event.listen(engine, "handle_error", lambda context: self.disarm(context.connection))
        event.listen(engine, "commit", arm)
        event.listen(engine, "rollback", arm)
        event.listen(engine.pool, "checkin", lambda dbapi_connection, _record: self._disarm_dbapi(dbapi_connection))

    @staticmethod
    def _dbapi(conn):
        """The DBAPI connection under `conn`; None once it is closed or invalidated (nothing to watch)."""
        if conn is None or conn.closed or conn.invalidated:
            return None
        return conn.connection.dbapi_connection

    def arm(self, conn, limit: float) -> None:
        dbapi_connection = self._dbapi(conn)
        if dbapi_connection is None or conn.get_execution_options().get("gatehouse_unbounded"):
            return
        self._armed[id(dbapi_connection)] = (time.monotonic() + limit, dbapi_connection, limit)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._watch, name="gatehouse-db-watchdog", daemon=True)
                    self._thread.start()

    def disarm(self, conn) -> None:
        dbapi_connection = self._dbapi(conn)
        if dbapi_connection is not None:
            self._disarm_dbapi(dbapi_connection)

    def _disarm_dbapi(self, dbapi_connection) -> None:
        self._armed.pop(id(dbapi_connection), None)

    def _watch(self) -> None:
        while True:
            time.sleep(self.TICK)
            moment = time.monotonic()
            for key, entry in list(self._armed.items()):
                if entry[0] <= moment and self._armed.get(key) is entry:
                    self._armed.pop(key, None)
                    self._abandon(entry[1], entry[2])

    @staticmethod
    def _abandon(dbapi_connection, limit: float) -> None:
        from psycopg.pq import TransactionStatus

        pgconn = dbapi_connection.pgconn
        if pgconn.transaction_status != TransactionStatus.ACTIVE:
            return  # it answered in the meantime, or sits idle between statements
        log.error("database call abandoned: no answer", extra={"limit_seconds": limit})
        try:
            with socket.fromfd(pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


WATCHDOG = Watchdog()


def install_watchdog(engine: Engine, timeout: int) -> None:
    """A second after the server's own statement_timeout: a live server always answers first."""
    if engine.dialect.name == "postgresql":
        WATCHDOG.install(engine, timeout + 1)


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def upsert_insert(model):
    """The INSERT of the database in use, the one that has `on_conflict_do_update` / `_do_nothing`
    (PostgreSQL's and SQLite's spell ON CONFLICT alike)."""
    return (postgresql.insert if is_postgres() else sqlite.insert)(model)


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
