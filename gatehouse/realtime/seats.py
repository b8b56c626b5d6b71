"""Fair shares of an instance's WebSockets: at most WS_CONNECTIONS_PER_USER per user (CONTRACT §6).

A seat is taken during the handshake, before the upgrade (the next one is 429), and given back when
the connection ends. The count covers every process of the instance, whichever the kernel hands a
connection to: under gunicorn (gunicorn.conf.py) the seats live in a small SQLite file in a
directory of the instance's own, created by the master before it starts the workers and removed
when it stops. A lock file makes the count and the taking one step, so two processes cannot both
give away a user's last seat; the master frees the seats of a worker that died without giving them
back. Without that directory (one process: tests, `flask run`) they are
counted in memory.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

INSTANCE_DIR = "GATEHOUSE_INSTANCE_DIR"  # set by gunicorn.conf.py; not a setting
FILE = "ws-seats.sqlite"
LOCK = "ws-seats.lock"


class LocalSeats:
    """One process's seats, in memory."""

    def __init__(self, per_user: int):
        self.per_user = per_user
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    def take(self, user_id: str) -> str | None:
        with self._lock:
            if self._counts[user_id] >= self.per_user:
                return None
            seat = uuid.uuid4().hex
            self._held[seat] = user_id
            self._counts[user_id] += 1
            return seat

    def give_back(self, seat: str) -> None:
        with self._lock:
            user_id = self._held.pop(seat, None)
            if user_id is not None:
                self._counts[user_id] -= 1
                if not self._counts[user_id]:
                    del self._counts[user_id]

    def give_back_all(self) -> None:
        with self._lock:
            self._held.clear()
            self._counts.clear()


class SharedSeats:
    """The seats of every process of the instance, in the instance directory's SQLite file."""

    def __init__(self, per_user: int, directory: Path):
        self.per_user = per_user
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._db = _open(directory)
        self._file_lock = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def _exclusive(self):
        """One process at a time, woken the moment the other is done. (SQLite's own lock would do, but
        its busy handler polls with sleeps of milliseconds: a reconnect storm's handshakes queued there.)"""
        with self._lock:
            fcntl.flock(self._file_lock, fcntl.LOCK_EX)
            try:
                yield self._db
            finally:
                fcntl.flock(self._file_lock, fcntl.LOCK_UN)

    def take(self, user_id: str) -> str | None:
        seat = uuid.uuid4().hex
        with self._exclusive() as db:
            (held,) = db.execute("SELECT count(*) FROM seats WHERE user_id = ?", (user_id,)).fetchone()
            if held >= self.per_user:
                return None
            db.execute("INSERT INTO seats (id, user_id, pid) VALUES (?, ?, ?)", (seat, user_id, self._pid))
            return seat

    def give_back(self, seat: str) -> None:
        with self._exclusive() as db:
            db.execute("DELETE FROM seats WHERE id = ?", (seat,))

    def give_back_all(self) -> None:
        """This process's seats, all at once: it is going away (its sockets close with 1001)."""
        with self._exclusive() as db:
            db.execute("DELETE FROM seats WHERE pid = ?", (self._pid,))


def _open(directory: Path) -> sqlite3.Connection:
    # Scratch state of a running instance: no durability wanted, and the file lives in a directory
    # only this user can enter (mkdtemp).
    db = sqlite3.connect(directory / FILE, timeout=10, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE IF NOT EXISTS seats (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, pid INTEGER NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS seats_user ON seats (user_id)")
    db.execute("CREATE INDEX IF NOT EXISTS seats_pid ON seats (pid)")
    return db


def seats(per_user: int) -> LocalSeats | SharedSeats:
    directory = os.environ.get(INSTANCE_DIR)
    if directory and os.path.isdir(directory):
        return SharedSeats(per_user, Path(directory))
    return LocalSeats(per_user)
