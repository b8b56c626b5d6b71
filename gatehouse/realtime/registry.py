"""The connections this process holds, by user and by session, and delivery of bus events to them."""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Protocol

# A bus target that is no user: the connections of every admin (who see visible users' presence).
ADMINS = "admins"


class Held(Protocol):
    id: str
    user_id: str
    session_id: str
    admin: bool

    def deliver(self, event: str, data: dict) -> None: ...

    def revoke(self) -> None: ...

    def go_away(self) -> None: ...


class Registry:
    """Thread-safe; delivery only queues a frame on each connection, so it never waits on a socket."""

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
            self._by_user[conn.user_id].add(conn)
            self._by_session[conn.session_id].add(conn)
            if conn.admin:
                self._admins.add(conn)
            return True

    def remove(self, conn: Held) -> int:
        """Forget a connection; how many of its user's connections this process still holds."""
        with self._lock:
            self._count -= 1
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

    def close_all(self) -> None:
        """Ask every connection to close (1001): the process is shutting down. Safe in a signal handler."""
        with self._lock:
            held = [conn for conns in self._by_user.values() for conn in conns]
        for conn in held:
            conn.go_away()

    def dispatch(self, target: str, event: str, data: dict) -> None:
        """Deliver one bus event: `session:revoked` ends that session's connections; any other event
        goes to every connection of the target user (or of every admin, for ADMINS)."""
        with self._lock:
            if event == "session:revoked":
                ending = list(self._by_session.get(data.get("sessionId", ""), ()))
            else:
                ending = None
                receivers = list(self._admins if target == ADMINS else self._by_user.get(target, ()))
        if ending is not None:
            for conn in ending:
                conn.revoke()
            return
        for conn in receivers:
            conn.deliver(event, data)
