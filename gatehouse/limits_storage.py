"""The `limits` storage behind RATELIMIT_STORAGE_URI=database:// (REDIS_URL unset): moving windows in
the app's own database, so that every process of the instance counts one `auth` bucket per address.

Each check of a key is one short transaction on its row: an upsert that returns the row also locks
it (PostgreSQL: the row lock; SQLite: the write lock its first write takes), so two processes that
check the same address at once are serialised and the 11th request is refused exactly once.
"""
from __future__ import annotations

import hashlib
import threading
import time

from limits.storage import MovingWindowSupport, Storage
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from gatehouse.extensions import db
from gatehouse.models import RateLimitWindow

SCHEME = "database"
KEY_LENGTH = 255
SWEEP_SECONDS = 60  # how often a process removes windows whose every hit has lapsed


def _key(key: str) -> str:
    return key if len(key) <= KEY_LENGTH else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _live(hits: list, now: float, expiry: int) -> list[float]:
    return [hit for hit in hits if hit > now - expiry]


class DatabaseStorage(Storage, MovingWindowSupport):
    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._swept = 0.0
        # The window this thread's last check left: the rate-limit headers of the same request read it
        # instead of a second transaction (measured: half the database time of an auth request).
        self._last = threading.local()

    @property
    def base_exceptions(self):
        return SQLAlchemyError

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        key = _key(key)
        engine = db.engine
        insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(RateLimitWindow)
        locking = (insert.values(key=key, hits=[], expires_at=now)
                   .on_conflict_do_update(index_elements=["key"], set_={"key": insert.excluded.key})
                   .returning(RateLimitWindow.hits))
        with engine.begin() as conn:
            hits = _live(conn.execute(locking).scalar_one(), now, expiry)
            granted = len(hits) + amount <= limit
            if granted:
                hits = [now] * amount + hits
            conn.execute(update(RateLimitWindow).where(RateLimitWindow.key == key)
                         .values(hits=hits, expires_at=(hits[0] if hits else now) + expiry))
            if now - self._swept > SWEEP_SECONDS:
                self._swept = now
                conn.execute(delete(RateLimitWindow).where(RateLimitWindow.expires_at < now))
        self._last.window = (key, now, hits)
        return granted

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now, key = time.time(), _key(key)
        last = getattr(self._last, "window", None)
        self._last.window = None
        if last is not None and last[0] == key and now - last[1] < 1:
            hits = last[2]
        else:
            with db.engine.connect() as conn:
                hits = conn.execute(select(RateLimitWindow.hits).where(RateLimitWindow.key == key)).scalar()
        hits = _live(hits or [], now, expiry)
        return (hits[-1], len(hits)) if hits else (now, 0)

    # The fixed-window operations: Gatehouse limits only with the moving window.
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("the database storage keeps moving windows only")

    def get(self, key: str) -> int:
        raise NotImplementedError("the database storage keeps moving windows only")

    def get_expiry(self, key: str) -> float:
        with db.engine.connect() as conn:
            expires = conn.execute(select(RateLimitWindow.expires_at)
                                   .where(RateLimitWindow.key == _key(key))).scalar()
        return expires if expires is not None else time.time()

    def check(self) -> bool:
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with db.engine.begin() as conn:
            return conn.execute(delete(RateLimitWindow)).rowcount

    def clear(self, key: str) -> None:
        with db.engine.begin() as conn:
            conn.execute(delete(RateLimitWindow).where(RateLimitWindow.key == _key(key)))
