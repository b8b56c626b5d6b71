"""Tokens carried by links in mails ("this wasn't me", revert an email change).

A token is 256 random bits, stored only as its SHA-256, valid LINK_TOKEN_DAYS, and spent by one
atomic UPDATE guarded by `used_at IS NULL`: of two concurrent uses exactly one gets the row.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import delete, exists, select, update

from gatehouse.config import DEFAULT_PUBLIC_URL
from gatehouse.extensions import db
from gatehouse.models import LinkToken, Session
from gatehouse.models.types import new_id
from gatehouse.security.tokens import new_ticket, sha256_hex
from gatehouse.runtime import setting

LINK_TOKEN_DAYS = 7
NOT_ME, EMAIL_REVERT = "not_me", "email_revert"


def issue(user_id: str, purpose: str, now: datetime, *, session: Session | None = None, email: str | None = None,
          email_key: str | None = None) -> str:
    """A new token of `purpose` for the user (added, not committed); the token itself, for the mail only.
    `session` may be one this transaction is adding: the token's row is written after it."""
    token = new_ticket()
    db.session.add(LinkToken(id=new_id(), user_id=user_id, purpose=purpose, token_hash=sha256_hex(token),
                             session=session, email=email, email_key=email_key, created_at=now,
                             expires_at=now + timedelta(days=LINK_TOKEN_DAYS)))
    return token


def live(purpose: str, token: str, now: datetime):
    """The SQL condition of the token's row while it may still be used."""
    return (LinkToken.token_hash == sha256_hex(token), LinkToken.purpose == purpose, LinkToken.used_at.is_(None),
            LinkToken.expires_at > now)


def spend(purpose: str, token: str, now: datetime) -> LinkToken | None:
    """The live token's row, now used (not committed); None when it is unknown, used or expired."""
    return db.session.execute(
        update(LinkToken).where(*live(purpose, token, now)).values(used_at=now).returning(LinkToken)
        .execution_options(synchronize_session=False)).scalar_one_or_none()


def address_reserved(email_key: str, now: datetime, *, except_user: str | None = None) -> bool:
    """Whether a live revert token holds this address for the account it was taken from: while the
    owner may still revert, nobody else registers it or changes to it."""
    condition = [LinkToken.purpose == EMAIL_REVERT, LinkToken.email_key == email_key, LinkToken.used_at.is_(None),
                 LinkToken.expires_at > now]
    if except_user is not None:
        condition.append(LinkToken.user_id != except_user)
    return bool(db.session.scalar(select(exists().where(*condition))))


def link(path: str, token: str) -> str:
    """The absolute portal link that carries `token` (PUBLIC_URL, else the default local address)."""
    return f"{setting('PUBLIC_URL') or DEFAULT_PUBLIC_URL}{path}?{urlencode({'token': token})}"


def purge(now: datetime) -> int:
    """Tokens past their expiry (used or not) are of no more use; commits."""
    result = db.session.execute(delete(LinkToken).where(LinkToken.expires_at <= now))
    db.session.commit()
    return result.rowcount
