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
        return {"pool_timeout": timeout, "connect_args": {"timeout": timeout, "check_same_thread": False}}
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
    """Shuts the socket of a PostgreSQL connection whose statement has run `limit` seconds without an
    answer; the blocked call then fails at once (OperationalError, answered 503) and the pool drops the
    connection. One thread per process; a statement only arms and disarms an entry of a dict."""

    def __init__(self, limit: float):
        self.limit = limit
        self._armed: dict[int, tuple[float, object]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def install(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._arm_statement)
        event.listen(engine, "after_cursor_execute", self._disarm_statement)
        event.listen(engine, "handle_error", lambda context: self.disarm(context.connection))
        event.listen(engine, "commit", self.arm)
        event.listen(engine, "rollback", self.arm)
        event.listen(engine.pool, "checkin", lambda dbapi_connection, _record: self._disarm_dbapi(dbapi_connection))

    def _arm_statement(self, conn, _cursor, _statement, _parameters, _context, _executemany) -> None:
        self.arm(conn)

    def _disarm_statement(self, conn, _cursor, _statement, _parameters, _context, _executemany) -> None:
        self.disarm(conn)

    @staticmethod
    def _dbapi(conn):
        """The DBAPI connection under `conn`; None once it is closed or invalidated (nothing to watch)."""
        if conn is None or conn.closed or conn.invalidated:
            return None
        return conn.connection.dbapi_connection

    def arm(self, conn) -> None:
        dbapi_connection = self._dbapi(conn)
        if dbapi_connection is None or conn.get_execution_options().get("gatehouse_unbounded"):
            return
        self._armed[id(dbapi_connection)] = (time.monotonic() + self.limit, dbapi_connection)
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
            time.sleep(min(0.25, self.limit / 4))
            moment = time.monotonic()
            for key, (deadline, dbapi_connection) in list(self._armed.items()):
                if deadline <= moment and self._armed.get(key, (None, None))[1] is dbapi_connection:
                    self._armed.pop(key, None)
                    self._abandon(dbapi_connection)

    def _abandon(self, dbapi_connection) -> None:
        from psycopg.pq import TransactionStatus

        pgconn = dbapi_connection.pgconn
        if pgconn.transaction_status != TransactionStatus.ACTIVE:
            return  # it answered in the meantime, or sits idle between statements
        log.error("database call abandoned: no answer", extra={"limit_seconds": self.limit})
        try:
            with socket.fromfd(pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def install_watchdog(engine: Engine, timeout: int) -> None:
    """A second after the server's own statement_timeout: a live server always answers first."""
    if engine.dialect.name == "postgresql":
        Watchdog(timeout + 1).install(engine)


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
