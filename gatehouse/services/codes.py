"""One-time codes (`one_time_codes`): six digits, stored as an HMAC, one purpose, single use, 5 tries.

Only the newest code of a purpose lives: issuing voids the older ones. Checking a code first takes
one of its 5 tries in one atomic UPDATE (so 50 concurrent guesses compare at most 5), then uses it
in a second atomic UPDATE guarded by `used_at IS NULL` (so of 8 concurrent right answers, one wins).

Per account and purpose, whatever the client address: at most CODE_MAILS_PER_HOUR codes are issued
in any hour, and at most CODE_WRONG_PER_DAY wrong codes are tried in any 24 hours, counted across
reissued codes (the rows stay, voided), so that asking for a new code never refills the tries.
Both are counted from the code rows themselves; beyond them the answer is 429 with Retry-After.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from gatehouse.errors import RateLimited
from gatehouse.extensions import db
from gatehouse.models import OneTimeCode, User
from gatehouse.models.types import new_id
from gatehouse.security.tokens import keyed_hash, new_code, same
from gatehouse.runtime import hmac_key, setting

MAX_TRIES = 5
TTL_SETTINGS = {"reset": "RESET_CODE_TTL", "verify": "VERIFY_CODE_TTL", "email_change": "EMAIL_CHANGE_TTL"}
MAIL_WINDOW = timedelta(hours=1)
WRONG_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires_at: datetime
    ttl_seconds: int


@dataclass(frozen=True)
class Redeemed:
    id: str
    target: str | None


def code_hash(code: str) -> str:
    return keyed_hash(hmac_key(), code)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _check_mail_cap(user_id: str, purpose: str, now: datetime) -> None:
    """RateLimited when CODE_MAILS_PER_HOUR codes of `purpose` were issued to the user within the hour."""
    cap = setting("CODE_MAILS_PER_HOUR")
    issued = db.session.scalars(
        select(OneTimeCode.created_at)
        .where(OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose,
               OneTimeCode.created_at > now - MAIL_WINDOW)
        .order_by(OneTimeCode.created_at)).all()
    if len(issued) >= cap:  # free again once enough of them leave the window
        raise RateLimited("Too many codes were sent to this account; try again later.",
                          retry_after=_seconds_until(issued[len(issued) - cap] + MAIL_WINDOW, now))


def issue(user_id: str, purpose: str, now: datetime, *, target: str | None = None) -> IssuedCode:
    """A new code for the user (added, not committed); every older live code of the purpose is void.
    `target`: what the code confirms (an email change's new address).

    RateLimited beyond CODE_MAILS_PER_HOUR.
    """
    ttl = setting(TTL_SETTINGS[purpose])
    # Serialises two issues for one user on PostgreSQL, so exactly one code stays live and the cap
    # is counted by one issuer at a time.
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update())
    _check_mail_cap(user_id, purpose, now)
    void(user_id, purpose, now)
    code = new_code()
    expires_at = now + timedelta(seconds=ttl)
    db.session.add(OneTimeCode(id=new_id(), user_id=user_id, purpose=purpose, code_hash=code_hash(code), target=target,
                               expires_at=expires_at, tries=0, created_at=now))
    return IssuedCode(code, expires_at, ttl)


def void(user_id: str, purpose: str, now: datetime) -> None:
    """Every live code of the purpose expires now (in the caller's transaction)."""
    db.session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose, OneTimeCode.used_at.is_(None),
               OneTimeCode.expires_at > now)
        .values(expires_at=now)
        .execution_options(synchronize_session=False))


def _live(user_id: str, purpose: str, now: datetime):
    return (OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose, OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now)


@dataclass(frozen=True)
class _Tried:
    created_at: datetime
    wrong: int  # every try of an unused code was wrong; a used code's last try was the right one
    live: bool


def _tried(user_id: str, purpose: str, now: datetime) -> list[_Tried]:
    """The user's codes of `purpose` tried within WRONG_WINDOW, oldest first."""
    rows = db.session.execute(
        select(OneTimeCode.created_at, OneTimeCode.tries, OneTimeCode.used_at, OneTimeCode.expires_at)
        .where(OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose,
               OneTimeCode.created_at > now - WRONG_WINDOW, OneTimeCode.tries > 0)
        .order_by(OneTimeCode.created_at)).all()
    return [_Tried(row.created_at, row.tries - (row.used_at is not None),
                   row.used_at is None and row.expires_at > now) for row in rows]


def _refuse_when_spent(tried: list[_Tried], now: datetime) -> None:
    """RateLimited once CODE_WRONG_PER_DAY wrong codes were tried, with the wait until the oldest
    of them leave the window enough for one more."""
    limit = setting("CODE_WRONG_PER_DAY")
    total = sum(code.wrong for code in tried)
    if total < limit:
        return
    for code in tried:
        total -= code.wrong
        if total < limit:
            raise RateLimited("Too many wrong codes for this account; try again later.",
                              retry_after=_seconds_until(code.created_at + WRONG_WINDOW, now))


def redeem(user_id: str, purpose: str, code: str, now: datetime) -> Redeemed | None:
    """The code's row when `code` is the user's live code of `purpose`; it is then used (not yet
    committed). None otherwise.

    A wrong code costs a try, committed at once so a later failure cannot give it back.
    RateLimited once the account has tried CODE_WRONG_PER_DAY wrong codes of `purpose` within 24
    hours, whichever codes they were tried on: reissuing a code does not refill the tries. Void
    codes take no more tries, so what they used is fixed, and `tries < budget` in the one UPDATE
    keeps concurrent guesses at the live code within the daily limit, as `tries < MAX_TRIES`
    keeps them within the code's own.
    """
    tried = _tried(user_id, purpose, now)
    _refuse_when_spent(tried, now)
    budget = setting("CODE_WRONG_PER_DAY") - sum(code.wrong for code in tried if not code.live)
    attempt = db.session.execute(
        update(OneTimeCode)
        .where(*_live(user_id, purpose, now), OneTimeCode.tries < MAX_TRIES, OneTimeCode.tries < budget)
        .values(tries=OneTimeCode.tries + 1)
        .returning(OneTimeCode.id, OneTimeCode.code_hash)
        .execution_options(synchronize_session=False)
    ).first()
    if attempt is None or not same(attempt.code_hash, code_hash(code)):
        db.session.commit()
        return None
    used = db.session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.id == attempt.id, *_live(user_id, purpose, now))
        .values(used_at=now)
        .returning(OneTimeCode.id, OneTimeCode.target)
        .execution_options(synchronize_session=False)
    ).first()
    if used is None:
        db.session.commit()
        return None
    return Redeemed(used.id, used.target)
