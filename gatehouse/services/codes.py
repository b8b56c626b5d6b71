"""One-time codes (`one_time_codes`): six digits, stored as an HMAC, one purpose, single use, 5 tries.

Only the newest code of a purpose lives: issuing voids the older ones. Checking a code first takes
one of its 5 tries in one atomic UPDATE (so 50 concurrent guesses compare at most 5), then uses it
in a second atomic UPDATE guarded by `used_at IS NULL` (so of 8 concurrent right answers, one wins).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from gatehouse.extensions import db
from gatehouse.models import OneTimeCode, User
from gatehouse.models.types import new_id
from gatehouse.security.tokens import keyed_hash, new_code, same
from gatehouse.services.runtime import hmac_key, setting

MAX_TRIES = 5
TTL_SETTINGS = {"reset": "RESET_CODE_TTL", "verify": "VERIFY_CODE_TTL"}


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires_at: datetime
    ttl_seconds: int


def code_hash(code: str) -> str:
    return keyed_hash(hmac_key(), code)


def issue(user_id: str, purpose: str, now: datetime) -> IssuedCode:
    """A new code for the user (added, not committed); every older live code of the purpose is void."""
    ttl = setting(TTL_SETTINGS[purpose])
    # Serialises two issues for one user on PostgreSQL, so exactly one code stays live.
    db.session.execute(select(User.id).where(User.id == user_id).with_for_update())
    db.session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose, OneTimeCode.used_at.is_(None),
               OneTimeCode.expires_at > now)
        .values(expires_at=now)
        .execution_options(synchronize_session=False))
    code = new_code()
    expires_at = now + timedelta(seconds=ttl)
    db.session.add(OneTimeCode(id=new_id(), user_id=user_id, purpose=purpose, code_hash=code_hash(code),
                               expires_at=expires_at, tries=0, created_at=now))
    return IssuedCode(code, expires_at, ttl)


def _live(user_id: str, purpose: str, now: datetime):
    return (OneTimeCode.user_id == user_id, OneTimeCode.purpose == purpose, OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now)


def redeem(user_id: str, purpose: str, code: str, now: datetime) -> bool:
    """True when `code` is the user's live code of `purpose`; it is then used (not yet committed).

    A wrong code costs a try, committed at once so a later failure cannot give it back.
    """
    attempt = db.session.execute(
        update(OneTimeCode)
        .where(*_live(user_id, purpose, now), OneTimeCode.tries < MAX_TRIES)
        .values(tries=OneTimeCode.tries + 1)
        .returning(OneTimeCode.id, OneTimeCode.code_hash)
        .execution_options(synchronize_session=False)
    ).first()
    if attempt is None or not same(attempt.code_hash, code_hash(code)):
        db.session.commit()
        return False
    used = db.session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.id == attempt.id, *_live(user_id, purpose, now))
        .values(used_at=now)
        .returning(OneTimeCode.id)
        .execution_options(synchronize_session=False)
    ).first()
    if used is None:
        db.session.commit()
        return False
    return True
