"""The connections this process holds, by user and by session, and who each bus event is for."""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Protocol

from gatehouse import metrics

# A bus target that is no user: the connections of every admin (who see visible users' presence).
ADMINS = "admins"


class Held(Protocol):
    id: str
    user_id: str
    session_id: str
    admin: bool

    def go_away(self) -> None: ...


class Registry:
    """Thread-safe."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._by_user: dict[str, set[Held]] = defaultdict(set)
        self._by_session: dict[str, set[Held]] = defaultdict(set)
        self._admins: set[Held] = set()
        self._count = 0

    def add(self, conn: Held) -> bool:
        """Hold a connection; False when the process already holds `capacity` of them."""
        with self._lock:
            if self._count >= self.capacity:
                return False
            self._count += 1
            metrics.ws_connections.inc()
            self._by_user[conn.user_id].add(conn)
            self._by_session[conn.session_id].add(conn)
            if conn.admin:
                self._admins.add(conn)
            return True

    def remove(self, conn: Held) -> int:
        """Forget a connection; how many of its user's connections this process still holds."""
        with self._lock:
            self._count -= 1
            metrics.ws_connections.dec()
            for index, key in ((self._by_user, conn.user_id), (self._by_session, conn.session_id)):
                index[key].discard(conn)
                if not index[key]:
                    del index[key]
            self._admins.discard(conn)
            return len(self._by_user.get(conn.user_id, ()))

    def set_admin(self, conn: Held, admin: bool) -> None:
        """A held connection's rights changed: it joins or leaves the admins' audience."""
        with self._lock:
            if admin:
                self._admins.add(conn)
            else:
                self._admins.discard(conn)

    def full(self) -> bool:
        with self._lock:
            return self._count >= self.capacity

    def held_for(self, user_id: str) -> int:
        with self._lock:
            return len(self._by_user.get(user_id, ()))

    def all(self) -> list[Held]:
        with self._lock:
            return [conn for conns in self._by_user.values() for conn in conns]

    def receivers(self, target: str, event: str, data: dict) -> list[Held]:
        """Who a bus event is for: `session:revoked`, that session's connections (they end); any other
        event, every connection of the target user (or of every admin, for ADMINS)."""
        with self._lock:
            if event == "session:revoked":
                return list(self._by_session.get(data.get("sessionId", ""), ()))
            return list(self._admins if target == ADMINS else self._by_user.get(target, ()))
