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

from sqlalchemy import bindparam, delete, func, select, update

from gatehouse.clock import iso_z
from gatehouse.database import upsert_insert
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
        self._upsert = None

    def _key(self, user_id: str) -> str:
        return f"gatehouse:presence:{user_id}"

    def hold(self, held: list[tuple[str, str]], now: datetime) -> None:
        """Record (or renew) held connections, as (user id, connection id): one statement or one
        pipeline for all of them, so a process's heartbeats cost one round trip a tick."""
        if not held:
            return
        try:
            if self._client is None:
                return self._hold_in_database(held, now)
            pipe = self._client.pipeline(transaction=False)
            lapses = now.timestamp() + self._lapse
            for user_id, members in _by_user(held).items():
                key = self._key(user_id)
                pipe.zadd(key, {conn_id: lapses for conn_id in members})
                pipe.expire(key, self._lapse)
            pipe.execute()
        except Exception as exc:
            log.warning("presence roster unavailable", extra={"error_type": type(exc).__name__})
        finally:
            db.session.remove()

    def _hold_in_database(self, held: list[tuple[str, str]], now: datetime) -> None:
        lapses_at = now + timedelta(seconds=self._lapse)
        if self._upsert is None:  # built once: a storm's opens and every second's heartbeats run it
            insert = upsert_insert(PresenceConnection)
            self._upsert = insert.on_conflict_do_update(index_elements=["id"],
                                                        set_={"lapses_at": insert.excluded.lapses_at})
        db.session.connection().execute(
            self._upsert, [{"id": conn_id, "user_id": user_id, "lapses_at": lapses_at} for user_id, conn_id in held])
        if self._swept is None or now - self._swept > timedelta(seconds=self.SWEEP_SECONDS):
            self._swept = now
            db.session.execute(delete(PresenceConnection).where(PresenceConnection.lapses_at <= now))
        db.session.commit()

    def release(self, held: list[tuple[str, str]], now: datetime) -> dict[str, int]:
        """Forget connections (already out of the registry); how many each of their users still has anywhere."""
        users = _by_user(held)
        local = {user_id: self._registry.held_for(user_id) for user_id in users}
        try:
            if self._client is None:
                remote = self._release_in_database(users, now)
            else:
                pipe = self._client.pipeline(transaction=False)
                for user_id, members in users.items():
                    key = self._key(user_id)
                    pipe.zrem(key, *members)
                    pipe.zremrangebyscore(key, "-inf", now.timestamp())
                    pipe.zcard(key)
                counts = pipe.execute()[2::3]
                remote = dict(zip(users, counts))
            return {user_id: max(local[user_id], remote.get(user_id, 0)) for user_id in users}
        except Exception as exc:
            log.warning("presence roster unavailable", extra={"error_type": type(exc).__name__})
            return local
        finally:
            db.session.remove()

    def _release_in_database(self, users: dict[str, list[str]], now: datetime) -> dict[str, int]:
        ids = [conn_id for members in users.values() for conn_id in members]
        mine = PresenceConnection.user_id.in_(list(users))
        db.session.execute(delete(PresenceConnection).where(
            mine, PresenceConnection.id.in_(ids) | (PresenceConnection.lapses_at <= now)))
        held = dict(db.session.execute(select(PresenceConnection.user_id, func.count())
                                       .where(mine).group_by(PresenceConnection.user_id)).all())
        db.session.commit()
        return held


def _by_user(held: list[tuple[str, str]]) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for user_id, conn_id in held:
        users.setdefault(user_id, []).append(conn_id)
    return users


# Built once (statement construction cost more than the query): a reconnect storm runs it thousands of times.
_LAST_ACTIVE = (select(User.id, func.max(Session.last_seen_at), User.show_status).select_from(User)
                .outerjoin(Session, (Session.user_id == User.id)
                           & Session.live_at(bindparam("now", type_=Session.expires_at.type)))
                .where(User.id.in_(bindparam("user_ids", expanding=True))).group_by(User.id, User.show_status))


class Presence:
    def __init__(self, roster: Roster, idle_seconds: int):
        self.roster = roster
        self.idle = timedelta(seconds=idle_seconds)

    def last_active(self, user_id: str, now: datetime) -> tuple[datetime | None, str]:
        """(the latest lastSeenAt of the user's live sessions, the user's showStatus)."""
        return self.last_active_of([user_id], now).get(user_id, (None, "hidden"))

    def last_active_of(self, user_ids, now: datetime) -> dict[str, tuple[datetime | None, str]]:
        """last_active of many users in one query (grouped by user)."""
        rows = db.session.connection().execute(_LAST_ACTIVE, {"user_ids": list(user_ids), "now": now}).all()
        db.session.remove()
        return {user_id: (last, show_status) for user_id, last, show_status in rows}

    def status(self, user_id: str, now: datetime) -> tuple[str, datetime | None, str]:
        last, show_status = self.last_active(user_id, now)
        return self._status(last, now), last, show_status

    def _status(self, last: datetime | None, now: datetime) -> str:
        return "active" if last is not None and now - last < self.idle else "idle"

    def announce(self, user_id: str, status: str, last: datetime | None, show_status: str) -> None:
        data = {"userId": user_id, "status": status, "lastActiveAt": iso_z(last) if last else None}
        publish(user_id, "presence:updated", data)
        if show_status == "visible":
            publish(ADMINS, "presence:updated", data)

    def opened(self, held: list[tuple[str, str]], now: datetime) -> dict[str, datetime | None]:
        """Connections opened, as (user id, connection id): each announces its user's status (one
        announcement per connection); lastActiveAt of each user."""
        self.roster.hold(held, now)
        known = self.last_active_of({user_id for user_id, _ in held}, now)
        for user_id, _ in held:
            last, show_status = known.get(user_id, (None, "hidden"))
            self.announce(user_id, self._status(last, now), last, show_status)
        return {user_id: known.get(user_id, (None, "hidden"))[0] for user_id, _ in held}

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

    def closed(self, held: list[tuple[str, str]], now: datetime) -> None:
        """Connections closed, as (user id, connection id): a user left with none anywhere is offline."""
        for user_id, remaining in self.roster.release(held, now).items():
            if remaining == 0:
                last, show_status = self.last_active(user_id, now)
                self.announce(user_id, "offline", last, show_status)
