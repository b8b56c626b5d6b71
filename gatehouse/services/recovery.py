"""Password recovery and email verification: forgot_password, reset_password, verify_email,
resend_verification. Each mail is an outbox row in the same transaction as the code it carries."""
from __future__ import annotations

import json
import time
from datetime import datetime

from sqlalchemy import select, update

from gatehouse import outbox
from gatehouse.clock import iso_z
from gatehouse.errors import InvalidCode, PasswordTooWeak, RateLimited
from gatehouse.extensions import db
from gatehouse.models import User
from gatehouse.params import ForgotPasswordParams, ResetPasswordParams, email_key
from gatehouse.realtime.bus import publish
from gatehouse.security.tokens import keyed_hash, new_code
from gatehouse.services import codes, security_events, sessions, throttle
from gatehouse.services.accounts import hash_new_password
from gatehouse.runtime import hmac_key, sealer, setting

# forgot_password answers no sooner than this, known address or not, so the database writes of a
# known one do not show in the response time (the decoy work alone leaves a gap of about a millisecond).
FORGOT_PASSWORD_FLOOR_SECONDS = 0.1


def _active_user(email: str) -> User | None:
    user = db.session.execute(select(User).where(User.email_key == email_key(email))).unique().scalar_one_or_none()
    return user if user is not None and user.active else None


def mail_code(user: User, purpose: str, template: str, now: datetime) -> None:
    """Issue a code of `purpose` and queue its mail (not committed); a pending mail of an older code
    of the same kind is expired, since that code is void now."""
    issued = codes.issue(user.id, purpose, now)
    outbox.supersede(user.id, template)
    outbox.enqueue(template, user.email, {"code": issued.code, "ttl_seconds": issued.ttl_seconds},
                   now=now, user_id=user.id, expires_at=issued.expires_at)


def mail_verification_code(user: User, now: datetime) -> None:
    mail_code(user, "verify", "verify-email", now)


def forgot_password(params: ForgotPasswordParams, now: datetime) -> None:
    """Mail a reset code when an active account has the address. The caller's answer is the same
    either way, in comparable time: an unknown address does the same code, hash and encryption
    work, and both wait out FORGOT_PASSWORD_FLOOR_SECONDS.
    An account that had CODE_MAILS_PER_HOUR reset codes within the hour gets no more mail until
    the hour frees one, and the caller is told nothing of it either."""
    started = time.perf_counter()
    user = _active_user(params.email)
    sent = False
    if user is not None:
        try:
            mail_code(user, "reset", "reset-password", now)
            db.session.commit()
            sent = True
        except RateLimited:
            pass
    if not sent:
        db.session.rollback()
        _decoy_work()
    time.sleep(max(0.0, FORGOT_PASSWORD_FLOOR_SECONDS - (time.perf_counter() - started)))


def _decoy_work() -> None:
    code = new_code()
    keyed_hash(hmac_key(), code)
    sealer().seal(json.dumps({"code": code, "ttl_seconds": setting("RESET_CODE_TTL")}).encode())


def reset_password(params: ResetPasswordParams, now: datetime) -> None:
    """Set a new password with a mailed reset code; every session is revoked and a notice mailed.

    A wrong, spent, expired or voided code and an unknown address all give InvalidCode.
    The code is checked before the new password, so that the password policy (which refuses the
    account's own username) never tells a caller without the code anything about the account; a
    right code with a weak password stays usable (the rollback gives its use back).
    """
    user = _active_user(params.email)
    if user is None or not codes.redeem(user.id, "reset", params.code, now):
        db.session.rollback()
        raise InvalidCode()
    try:
        password_hash = hash_new_password(params.new_password, email=user.email, username=user.username,
                                          field="newPassword")
    except PasswordTooWeak:
        db.session.rollback()
        raise
    db.session.execute(
        update(User).where(User.id == user.id)
        .values(password_hash=password_hash, password_locked_at=None, updated_at=now)
        .execution_options(synchronize_session=False))
    throttle.clear(user)  # a reset ends the backoff and the lockout
    security_events.record(user.id, "password_reset", now)
    outbox.enqueue("password-changed", user.email,
                   {"changed_at": iso_z(now), "signed_out_everywhere": True},
                   now=now, user_id=user.id)
    sessions.revoke_all(user.id, now)
    db.session.commit()  # the used code, the new password, the notice and the revocations together


def verify_email(user: User, code: str, now: datetime) -> User:
    """Mark the caller's address verified with the mailed code; version +1 and entity:updated."""
    if user.email_verified_at is not None:  # a retried request whose first answer was lost
        return user
    if not codes.redeem(user.id, "verify", code, now):
        db.session.rollback()
        raise InvalidCode()
    version = db.session.execute(
        update(User).where(User.id == user.id, User.email_verified_at.is_(None))
        .values(email_verified_at=now, version=User.version + 1, updated_at=now)
        .returning(User.version)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    db.session.commit()
    fresh = db.session.execute(select(User).where(User.id == user.id)
                               .execution_options(populate_existing=True)).unique().scalar_one()
    if version is not None:
        publish(user.id, "entity:updated",
                {"entity": "user", "id": user.id, "version": version, "fields": ["emailVerified"]})
    return fresh


def resend_verification(user: User, now: datetime) -> None:
    """Mail a fresh verification code (the old one is void); nothing when already verified.

    RateLimited (429 with Retry-After) beyond CODE_MAILS_PER_HOUR codes within the hour.
    """
    if user.email_verified_at is not None:
        return
    mail_verification_code(user, now)
    db.session.commit()
