"""Presence: whether a user is active, idle or offline, announced as `presence:updated`.

- active: the user did something within WS_IDLE_SECONDS (a `presence:active` frame, or any request
  that renewed one of their sessions' lastSeenAt); idle: connected, but nothing since; offline: no
  connection in any process. lastActiveAt is the latest lastSeenAt of the user's live sessions.
- Who sees it: the user's own connections, and admins' connections for users whose showStatus is
  "visible"; a hidden user's presence reaches no one else. No other audience exists in Gatehouse.
- Announced when a connection opens, at each `presence:active`, when activity lapses into idle
  (by every connection that notices it, so it may repeat), and when the user's last connection closes.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gatehouse.clock import iso_z
from gatehouse.extensions import db
from gatehouse.models import PresenceConnection, Session, User
from gatehouse.realtime.bus import publish
from gatehouse.realtime.registry import ADMINS, Registry

log = logging.getLogger(__name__)


class Roster:
    """Counts a user's connections across processes, each entry scored by when it lapses (a crashed
    process's entries lapse by themselves): a Redis sorted set when REDIS_URL is set, else rows of
    presence_connections in the database the processes share. Every database step here returns its
    connection to the pool before the socket waits again."""

    SWEEP_SECONDS = 60

    def __init__(self, registry: Registry, client=None, lapse_seconds: int = 75):
        self._registry = registry
        self._client = client
        self._lapse = lapse_seconds
        self._swept: datetime | None = None

    def _key(self, user_id: str) -> str:
        return f"gatehouse:presence:{user_id}"

    def hold(self, user_id: str, conn_id: str, now: datetime) -> None:
        """Record (or renew) a held connection."""
        try:
            if self._client is None:
                return self._hold_in_database(user_id, conn_id, now)
            key = self._key(user_id)
            pipe = self._client.pipeline()
            pipe.zadd(key, {conn_id: now.timestamp() + self._lapse})
            pipe.expire(key, self._lapse)
            pipe.execute()
        except Exception as exc:
            log.warning("presence roster unavailable", extra={"error_type": type(exc).__name__})
        finally:
            db.session.remove()

    def _hold_in_database(self, user_id: str, conn_id: str, now: datetime) -> None:
        lapses_at = now + timedelta(seconds=self._lapse)
        insert = (postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert)(PresenceConnection)
        db.session.execute(insert.values(id=conn_id, user_id=user_id, lapses_at=lapses_at)
                           .on_conflict_do_update(index_elements=["id"], set_={"lapses_at": lapses_at}))
        if self._swept is None or now - self._swept > timedelta(seconds=self.SWEEP_SECONDS):
            self._swept = now
            db.session.execute(delete(PresenceConnection).where(PresenceConnection.lapses_at <= now))
        db.session.commit()

    def release(self, user_id: str, conn_id: str, now: datetime) -> int:
        """Forget a connection (already out of the registry); how many the user still has anywhere."""
        local = self._registry.held_for(user_id)
        try:
            if self._client is None:
                return max(local, self._release_in_database(user_id, conn_id, now))
            key = self._key(user_id)
            pipe = self._client.pipeline()
            pipe.zrem(key, conn_id)
            pipe.zremrangebyscore(key, "-inf", now.timestamp())
            pipe.zcard(key)
            return max(local, pipe.execute()[-1])
        except Exception as exc:
            log.warning("presence roster unavailable", extra={"error_type": type(exc).__name__})
            return local
        finally:
            db.session.remove()

    def _release_in_database(self, user_id: str, conn_id: str, now: datetime) -> int:
        mine = PresenceConnection.user_id == user_id
        db.session.execute(delete(PresenceConnection).where(
            mine, (PresenceConnection.id == conn_id) | (PresenceConnection.lapses_at <= now)))
        held = db.session.scalar(select(func.count()).select_from(PresenceConnection).where(mine))
        db.session.commit()
        return held


class Presence:
    def __init__(self, roster: Roster, idle_seconds: int):
        self.roster = roster
        self.idle = timedelta(seconds=idle_seconds)

    def last_active(self, user_id: str, now: datetime) -> tuple[datetime | None, str]:
        """(the latest lastSeenAt of the user's live sessions, the user's showStatus)."""
        row = db.session.execute(
            select(func.max(Session.last_seen_at), User.show_status)
            .select_from(User).outerjoin(Session, (Session.user_id == User.id) & Session.revoked_at.is_(None)
                                         & (Session.expires_at > now))
            .where(User.id == user_id).group_by(User.show_status)
        ).one_or_none()
        db.session.remove()
        if row is None:
            return None, "hidden"
        return row[0], row[1]

    def status(self, user_id: str, now: datetime) -> tuple[str, datetime | None, str]:
        last, show_status = self.last_active(user_id, now)
        active = last is not None and now - last < self.idle
        return ("active" if active else "idle"), last, show_status

    def announce(self, user_id: str, status: str, last: datetime | None, show_status: str) -> None:
        data = {"userId": user_id, "status": status, "lastActiveAt": iso_z(last) if last else None}
        publish(user_id, "presence:updated", data)
        if show_status == "visible":
            publish(ADMINS, "presence:updated", data)

    def opened(self, user_id: str, conn_id: str, now: datetime) -> datetime | None:
        """A connection opened: announce the user's status; returns lastActiveAt."""
        self.roster.hold(user_id, conn_id, now)
        status, last, show_status = self.status(user_id, now)
        self.announce(user_id, status, last, show_status)
        return last

    def active(self, user_id: str, session_id: str, now: datetime) -> None:
        """`presence:active`: renew the session's lastSeenAt and announce the user active."""
        db.session.execute(update(Session).where(Session.id == session_id).values(last_seen_at=now))
        db.session.commit()
        show_status = db.session.scalar(select(User.show_status).where(User.id == user_id))
        db.session.remove()
        self.announce(user_id, "active", now, show_status)

    def settle(self, user_id: str, now: datetime) -> datetime | None:
        """At the end of an activity window: announce idle if nothing renewed it; the latest lastActiveAt."""
        status, last, show_status = self.status(user_id, now)
        if status == "idle":
            self.announce(user_id, status, last, show_status)
        return last

    def closed(self, user_id: str, conn_id: str, now: datetime) -> None:
        if self.roster.release(user_id, conn_id, now) == 0:
            last, show_status = self.last_active(user_id, now)
            self.announce(user_id, "offline", last, show_status)
