"""Per-identifier sign-in backoff and lockout (NIST SP 800-63B §5.2.2): the rule and its counters.

Each account, and each normalised sign-in identifier (an email key or a username key) that no account
has, gets SIGNIN_FREE_FAILURES consecutive failures free: an account's email and username share one
count, so naming the account both ways earns no extra failures; from then on every failure makes the next
attempt wait, SIGNIN_BACKOFF_BASE seconds doubling up to SIGNIN_BACKOFF_MAX; a success resets the
count; at SIGNIN_LOCKOUT_FAILURES the account's password is locked until a reset clears it.
Counters are kept in Redis when it is configured (the database stands in while Redis fails), else
in the database, so they hold across processes, instances and restarts.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import case, delete, select, update

from gatehouse import metrics
from gatehouse.database import upsert_insert
from gatehouse.errors import RateLimited
from gatehouse.extensions import db
from gatehouse.models import SignInFailure, User
from gatehouse.security.tokens import keyed_hash
from gatehouse.services import security_events
from gatehouse.runtime import hmac_key, setting

log = logging.getLogger(__name__)

# A counter left alone this long starts again from zero (and its row may be purged).
FORGET_AFTER = timedelta(days=30)


def wait_after(failures: int) -> int:
    """Seconds the next attempt must wait after this many consecutive failures (0 = none)."""
    free = setting("SIGNIN_FREE_FAILURES")
    if failures < free:
        return 0
    doublings = min(failures - free, 32)
    return min(setting("SIGNIN_BACKOFF_BASE") * 2 ** doublings, setting("SIGNIN_BACKOFF_MAX"))


class _DatabaseCounters:
    """sign_in_failures rows, changed by single atomic statements (safe across processes)."""

    def blocked_until(self, key: str) -> datetime | None:
        return db.session.scalar(select(SignInFailure.blocked_until).where(SignInFailure.identifier_hash == key))

    def add_failure(self, key: str, now: datetime) -> int:
        stale = SignInFailure.updated_at < now - FORGET_AFTER
        statement = upsert_insert(SignInFailure).values(identifier_hash=key, failures=1, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[SignInFailure.identifier_hash],
            set_={"failures": case((stale, 1), else_=SignInFailure.failures + 1), "updated_at": now},
        ).returning(SignInFailure.failures)
        return db.session.execute(statement).scalar_one()

    def block(self, key: str, until: datetime) -> None:
        db.session.execute(update(SignInFailure).where(SignInFailure.identifier_hash == key)
                           .values(blocked_until=until))

    def forget(self, keys: list[str]) -> None:
        db.session.execute(delete(SignInFailure).where(SignInFailure.identifier_hash.in_(keys)))


class _RedisCounters:
    """One hash per identifier: failures (HINCRBY) and blocked_until (a UTC timestamp)."""

    def __init__(self, client):
        self.client = client

    @staticmethod
    def _name(key: str) -> str:
        return f"gatehouse:sign-in:{key}"

    def blocked_until(self, key: str) -> datetime | None:
        value = self.client.hget(self._name(key), "blocked_until")
        return datetime.fromtimestamp(float(value), timezone.utc) if value else None

    def add_failure(self, key: str, now: datetime) -> int:
        pipe = self.client.pipeline()
        pipe.hincrby(self._name(key), "failures", 1)
        pipe.expire(self._name(key), FORGET_AFTER)
        return int(pipe.execute()[0])

    def block(self, key: str, until: datetime) -> None:
        self.client.hset(self._name(key), "blocked_until", until.timestamp())

    def forget(self, keys: list[str]) -> None:
        self.client.delete(*(self._name(key) for key in keys))


_DATABASE = _DatabaseCounters()


def _counters(operation: str, *args):
    client = current_app.extensions.get("gatehouse.redis")
    if client is None:
        return getattr(_DATABASE, operation)(*args)
    try:
        return getattr(_RedisCounters(client), operation)(*args)
    except (RedisError, OSError):
        # Never fail open and never 500: the database holds the count while Redis is away.
        log.warning("sign-in counters: Redis unreachable, using the database")
        return getattr(_DATABASE, operation)(*args)


def _key(identifier: str, user: User | None = None) -> str:
    """The counter of an attempt: the account's once the identifier names one, else the identifier's."""
    subject = f"account:{user.id}" if user is not None else identifier
    return keyed_hash(hmac_key(), "sign-in:" + subject)


def _enabled() -> bool:
    return bool(setting("RATELIMIT_ENABLED"))


def check(identifier: str, now: datetime, user: User | None = None) -> None:
    """429 rate_limited while this account (or unknown identifier) must wait: the password is then
    not checked at all."""
    if not _enabled():
        return
    until = _counters("blocked_until", _key(identifier, user))
    if until is not None and until > now:
        metrics.rate_limited.labels("sign_in").inc()
        raise RateLimited("Too many failed sign-in attempts for this account; try again later.",
                          retry_after=math.ceil((until - now).total_seconds()))


def failed(identifier: str, now: datetime, user: User | None = None) -> None:
    """Count a failed attempt, start the wait it earns, lock `user`'s password at the lockout count.

    Commits (the caller is about to refuse the request).
    """
    if not _enabled():
        return
    key = _key(identifier, user)
    failures = _counters("add_failure", key, now)
    wait = wait_after(failures)
    if wait:
        _counters("block", key, now + timedelta(seconds=wait))
    if user is not None and failures >= setting("SIGNIN_LOCKOUT_FAILURES"):
        locked = db.session.execute(update(User).where(User.id == user.id, User.password_locked_at.is_(None))
                                    .values(password_locked_at=now).returning(User.id)).scalar_one_or_none()
        if locked is not None:
            security_events.record(user.id, "locked", now, detail={"failures": failures})
    db.session.commit()


def succeeded(identifier: str, user: User | None = None) -> None:
    """A correct password resets the count (in the caller's transaction when kept in the database)."""
    if _enabled():
        _counters("forget", [_key(identifier, user)])


def clear(user: User) -> None:
    """Forget the account's failures (and any its email or username gathered before it existed),
    whatever RATELIMIT_ENABLED says (a password reset). In the caller's transaction when the
    counters are kept in the database."""
    keys = [_key("", user)] + [_key(identifier) for identifier in (user.email_key, user.username_key) if identifier]
    _counters("forget", keys)


def unlock(user: User) -> None:
    """What a password reset does here: forget the account's failures and unlock its password.

    The caller commits.
    """
    clear(user)
    user.password_locked_at = None


def purge(now: datetime) -> int:
    """Delete counters left alone for FORGET_AFTER (Redis expires its own); commits."""
    result = db.session.execute(delete(SignInFailure).where(SignInFailure.updated_at < now - FORGET_AFTER))
    db.session.commit()
    return result.rowcount
