"""Changing the account's email address (CONTRACT §10): request, confirm, revert.

A request (from a fresh sign-in) mails a code to the new address; until that code comes back the
old address stays the account's. Confirming makes the new address the account's, verified, and
mails the old one a notice with a revert link (7 days). Reverting puts the old address back, signs
every session out and locks the password until it is reset; while a revert link lives, nobody else
may take the old address. Uniqueness is the database's: the normalised address is a unique key,
so of concurrent confirmations of one address exactly one wins.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError

from gatehouse import outbox
from gatehouse.clock import iso_z
from gatehouse.errors import EmailTaken, InvalidCode, RateLimited, field_error
from gatehouse.extensions import db
from gatehouse.i18n import N_
from gatehouse.models import LinkToken, User
from gatehouse.params import EmailChangeParams, email_key
from gatehouse.realtime.bus import publish_after_commit
from gatehouse.services import codes, link_tokens, security_events, sessions
from gatehouse.services.recovery import mail_code

PURPOSE = "email_change"
CODE_MAIL = "email-change-code"


def _taken(key: str, user_id: str, now: datetime) -> bool:
    return bool(db.session.scalar(select(exists().where(User.email_key == key)))) or \
        link_tokens.address_reserved(key, now, except_user=user_id)


def request_change(caller: sessions.Caller, params: EmailChangeParams, now: datetime) -> None:
    """Mail a code to the new address (202); 409 email_taken when an account has it. A newer request
    voids the older one's code."""
    user = caller.user
    key = email_key(params.new_email)
    if key == user.email_key:
        raise field_error("newEmail", N_("is already the address of this account"))
    if _taken(key, user.id, now):
        raise EmailTaken()
    issued = codes.issue(user.id, PURPOSE, now, target=params.new_email)  # RateLimited beyond the hourly cap
    outbox.supersede(user.id, CODE_MAIL)
    outbox.enqueue(CODE_MAIL, params.new_email, {"code": issued.code, "ttl_seconds": issued.ttl_seconds},
                   now=now, user_id=user.id, expires_at=issued.expires_at)
    security_events.record(user.id, "email_change_requested", now, session_id=caller.session_id,
                           device_id=caller.snapshot.session.device_id, detail={"newEmail": params.new_email})
    db.session.commit()


def _set_email(user_id: str, email: str, now: datetime, **values) -> int:
    """The account's address becomes `email`, verified now; version + 1. EmailTaken when another
    account holds it (the unique key decides, whatever was checked before)."""
    try:
        return db.session.execute(
            update(User).where(User.id == user_id)
            .values(email=email, email_key=email_key(email), email_verified_at=now, version=User.version + 1,
                    updated_at=now, **values)
            .returning(User.version).execution_options(synchronize_session=False)).scalar_one()
    except IntegrityError:
        db.session.rollback()
        raise EmailTaken() from None


def _reread(user_id: str) -> User:
    return db.session.execute(select(User).where(User.id == user_id)
                              .execution_options(populate_existing=True)).unique().scalar_one()


def _announce(user_id: str, version: int) -> None:
    publish_after_commit(user_id, "entity:updated", {"entity": "user", "id": user_id, "version": version,
                                                      "fields": ["email", "emailVerified"]})


def confirm(caller: sessions.Caller, code: str, now: datetime) -> User:
    """The mailed code makes its address the account's; the old address gets a notice with a revert link."""
    user = caller.user
    redeemed = codes.redeem(user.id, PURPOSE, code, now)
    if not redeemed:
        db.session.rollback()
        raise InvalidCode()
    new_email = redeemed.target
    if link_tokens.address_reserved(email_key(new_email), now, except_user=user.id):
        db.session.rollback()
        raise EmailTaken()
    old_email, old_key = user.email, user.email_key
    version = _set_email(user.id, new_email, now)
    token = link_tokens.issue(user.id, link_tokens.EMAIL_REVERT, now, email=old_email, email_key=old_key)
    outbox.enqueue("email-changed", old_email, {
        "at": iso_z(now), "new_email": new_email, "revert_url": link_tokens.link("/account/email/revert", token),
    }, now=now, user_id=user.id)
    security_events.record(user.id, "email_changed", now, session_id=caller.session_id,
                           device_id=caller.snapshot.session.device_id, detail={"oldEmail": old_email, "newEmail": new_email})
    _announce(user.id, version)
    db.session.commit()
    return _reread(user.id)


def revert(token: str, now: datetime) -> None:
    """The old address is the account's again; every session is revoked and the password locked
    until a reset, whose code is mailed to the restored address. Once only; the account's other
    revert links die with it (the one to an address taken over must not undo this)."""
    row = link_tokens.spend(link_tokens.EMAIL_REVERT, token, now)
    if row is None:
        db.session.rollback()
        raise InvalidCode(N_("This link has expired or was already used."))
    replaced = db.session.scalar(select(User.email).where(User.id == row.user_id))
    version = _set_email(row.user_id, row.email, now, password_locked_at=now)
    db.session.execute(update(LinkToken).where(LinkToken.user_id == row.user_id,
                                               LinkToken.purpose == link_tokens.EMAIL_REVERT,
                                               LinkToken.used_at.is_(None))
                       .values(used_at=now).execution_options(synchronize_session=False))
    codes.void(row.user_id, PURPOSE, now)
    security_events.record(row.user_id, "email_reverted", now, detail={"email": row.email, "replaced": replaced})
    user = _reread(row.user_id)
    try:
        mail_code(user, "reset", "reset-password", now)
    except RateLimited:  # codes were mailed this hour already; "Forgot password" sends one later
        pass
    _announce(row.user_id, version)
    sessions.revoke_all(row.user_id, now)
    db.session.commit()
