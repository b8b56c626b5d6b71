"""Second factors of an account: TOTP and recovery codes, what the account has, and what every change does.

Every enrolment or removal of a factor (and every recovery code used) mails the user in the same
transaction, bumps the user's version, revokes every other session and publishes `entity:updated`.
TOTP steps and recovery codes are spent by one atomic UPDATE each, so two concurrent requests
with the same code cannot both pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from gatehouse.clock import iso_z
from gatehouse.errors import FactorExists, InvalidMfaCode, NotFound
from gatehouse.extensions import db
from gatehouse.i18n import N_
from gatehouse.models import MfaTotp, Passkey, RecoveryCode, User
from gatehouse.models.types import new_id
from gatehouse.outbox import enqueue
from gatehouse.realtime.bus import publish_after_commit
from gatehouse.security import factors as secrets_
from gatehouse.security.tokens import keyed_hash
from gatehouse.services import security_events, sessions
from gatehouse.services.profile import _bump_version as bump_version
from gatehouse.runtime import hmac_key, sealer

TOTP_PENDING = timedelta(minutes=10)
ISSUER = "Gatehouse"


@dataclass(frozen=True)
class Proof:
    """How a second step proved the user: RFC 8176 `amr` values and the assurance level reached."""

    amr: tuple[str, ...]
    aal: int


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str
    expires_at: datetime


@dataclass
class Summary:
    totp: MfaTotp | None
    passkeys: list[Passkey]
    recovery_codes_left: int


# ---- what an account has -----------------------------------------------------------------------

def _confirmed_totp(user_id: str):
    return select(MfaTotp).where(MfaTotp.user_id == user_id, MfaTotp.confirmed_at.is_not(None))


# One round trip, built once: every sign-in asks it.
_METHODS = select(exists().where(MfaTotp.user_id == bindparam("user_id"), MfaTotp.confirmed_at.is_not(None)),
                  exists().where(Passkey.user_id == bindparam("user_id")))


def methods_of(user_id: str) -> list[str]:
    """The ways this account can finish a sign-in (`totp`, `recovery_code`, `passkey`); empty = none needed."""
    has_totp, has_passkey = db.session.execute(_METHODS, {"user_id": user_id}).one()
    if not (has_totp or has_passkey):
        return []
    found = ["totp"] if has_totp else []
    if recovery_codes_left(user_id):
        found.append("recovery_code")
    return found + (["passkey"] if has_passkey else [])


def has_second_factor(user_id: str) -> bool:
    return bool(methods_of(user_id))


def recovery_codes_left(user_id: str) -> int:
    return db.session.scalar(select(func.count()).select_from(RecoveryCode)
                             .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)))


def summary(user_id: str) -> Summary:
    passkeys = list(db.session.scalars(select(Passkey).where(Passkey.user_id == user_id)
                                       .order_by(Passkey.created_at, Passkey.id)))
    return Summary(db.session.scalar(_confirmed_totp(user_id)), passkeys, recovery_codes_left(user_id))


def changed(user: User, keep_session_id: str | None, template: str, context: dict, now: datetime, *, event: str,
            detail: dict | None = None) -> None:
    """What every factor change does: the mail, its security event `event`, version + 1, every other
    session revoked (one commit), then `entity:updated`. Without `keep_session_id` it is an admin's doing.
    The mail dates the change in the recipient's zone and language (`at`, ISO 8601)."""
    enqueue(template, user.email, {"at": iso_z(now), **context}, now=now, user_id=user.id)
    security_events.record(user.id, event, now, session_id=keep_session_id, detail=detail,
                           client=security_events.BY_ADMIN if keep_session_id is None else None)
    version = bump_version(user.id, None, now)
    sessions.revoke_all(user.id, now, except_id=keep_session_id)
    publish_after_commit(user.id, "entity:updated", {"entity": "user", "id": user.id, "version": version,
                                                      "fields": ["mfa"]})
    db.session.commit()


ADDED, REMOVED = "added to", "removed from"
# Which factor changed: the mail says it in the recipient's language (templates/email/factor-changed.*).
TOTP, PASSKEY, RECOVERY_CODES = "totp", "passkey", "recovery_codes"


def factor_changed(user: User, keep_session_id: str, change: str, factor: str, now: datetime, *, kind: str,
                   event: str, name: str | None = None, detail: dict | None = None) -> None:
    """`factor` (in English words) was ADDED or REMOVED by the session `keep_session_id`; `kind` (TOTP,
    PASSKEY, RECOVERY_CODES) and the passkey's `name` let the mail say it in the recipient's language;
    `event` and `detail` are its security event."""
    context = {"change": change, "factor": factor, "kind": kind, **({"name": name} if name is not None else {})}
    changed(user, keep_session_id, "factor-changed", context, now, event=event, detail=detail)


def raise_session(session, proof: Proof, now: datetime) -> None:
    """The session now holds the level a second step just proved (added, not committed)."""
    session.amr = " ".join(proof.amr)
    session.aal = proof.aal
    session.auth_time = now


# ---- TOTP --------------------------------------------------------------------------------------

def start_totp(caller: sessions.Caller, now: datetime) -> Enrolment:
    """A pending secret, 10 minutes to confirm; 409 factor_exists while TOTP is on. A pending one is replaced."""
    user = caller.user
    db.session.execute(delete(MfaTotp).where(MfaTotp.user_id == user.id, MfaTotp.confirmed_at.is_(None)))
    secret = secrets_.new_totp_secret()
    expires_at = now + TOTP_PENDING
    db.session.add(MfaTotp(user_id=user.id, secret=sealer().seal(secret.encode()), created_at=now,
                           pending_until=expires_at))
    try:
        db.session.commit()  # the primary key decides: one TOTP row per user, a confirmed one stays
    except IntegrityError:
        db.session.rollback()
        raise FactorExists(N_("TOTP is already on; remove it first to set up another authenticator.")) from None
    return pending_totp(user, now)


def pending_totp(user: User, now: datetime) -> Enrolment | None:
    """The enrolment still waiting for its first code (the portal shows it again), or None."""
    row = db.session.scalar(select(MfaTotp).where(MfaTotp.user_id == user.id, MfaTotp.confirmed_at.is_(None),
                                                  MfaTotp.pending_until > now))
    if row is None:
        return None
    secret = _secret(row)
    uri = secrets_.totp_uri(secret, user.email, ISSUER)
    return Enrolment(secret, uri, secrets_.qr_svg(uri), row.pending_until)


def _secret(row: MfaTotp) -> str:
    opened = sealer().open(row.secret)
    if opened is None:  # SECRET_KEY changed: the sealed secret is unreadable, so no code can match
        return ""
    return opened.decode()


def confirm_totp(caller: sessions.Caller, code: str, now: datetime) -> list[str] | None:
    """Turn the pending secret on with its first code; the ten recovery codes when this is the first factor."""
    user = caller.user
    row = db.session.scalar(select(MfaTotp).where(MfaTotp.user_id == user.id, MfaTotp.confirmed_at.is_(None),
                                                  MfaTotp.pending_until > now))
    step = secrets_.matching_step(_secret(row), code, now) if row is not None else None
    if step is None:
        db.session.rollback()
        raise InvalidMfaCode(N_("The code does not match the pending authenticator, or setting it up took "
                                "longer than 10 minutes."),
                             errors=[{"field": "code", "message": N_("is not the current code")}])
    first = not has_second_factor(user.id)
    confirmed = db.session.execute(
        update(MfaTotp).where(MfaTotp.user_id == user.id, MfaTotp.confirmed_at.is_(None), MfaTotp.pending_until > now)
        .values(confirmed_at=now, pending_until=None, last_step=step).returning(MfaTotp.user_id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    if confirmed is None:  # a concurrent confirmation won
        db.session.rollback()
        raise InvalidMfaCode()
    codes = _new_recovery_codes(user.id, now) if first else None
    # The code just given is a second factor: this session reaches AAL2 and may go on changing factors.
    raise_session(caller.session, Proof(("pwd", "otp", "mfa"), 2), now)
    factor_changed(user, caller.session_id, ADDED, "an authenticator app (TOTP)", now, kind=TOTP,
                   event="mfa_enabled", detail={"factor": "totp"})
    return codes


def spend_totp(user_id: str, code: str, now: datetime) -> bool:
    """True when `code` is the user's TOTP code of now (±1 step) and no later step was used before.

    The step is written in one UPDATE guarded by `last_step < step`: the same code (or an earlier
    step's) is refused afterwards, and of two concurrent uses of one code exactly one passes.
    """
    row = db.session.scalar(_confirmed_totp(user_id))
    step = secrets_.matching_step(_secret(row), code, now) if row is not None else None
    if step is None:
        return False
    return db.session.execute(
        update(MfaTotp)
        .where(MfaTotp.user_id == user_id, MfaTotp.confirmed_at.is_not(None),
               (MfaTotp.last_step.is_(None)) | (MfaTotp.last_step < step))
        .values(last_step=step).returning(MfaTotp.user_id)
        .execution_options(synchronize_session=False)).scalar_one_or_none() is not None


def remove_totp(caller: sessions.Caller, now: datetime) -> None:
    user = caller.user
    removed = db.session.execute(delete(MfaTotp).where(MfaTotp.user_id == user.id)
                                 .returning(MfaTotp.confirmed_at)).scalars().all()
    if not any(removed):
        db.session.rollback()
        raise NotFound(N_("TOTP is not on for this account."))
    forget_codes_without_factor(user.id)
    factor_changed(user, caller.session_id, REMOVED, "the authenticator app (TOTP)", now, kind=TOTP,
                   event="mfa_disabled", detail={"factor": "totp"})


def forget_codes_without_factor(user_id: str) -> None:
    """Recovery codes stand in for a factor; with none left they would only be a spare password."""
    if not has_second_factor(user_id):
        db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


# ---- recovery codes ----------------------------------------------------------------------------

def _recovery_hash(normalised: str) -> str:
    return keyed_hash(hmac_key(), "recovery-code:" + normalised)


def _new_recovery_codes(user_id: str, now: datetime) -> list[str]:
    """Ten new codes (added, not committed); every older code of the user is deleted."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [secrets_.new_recovery_code() for _ in range(secrets_.RECOVERY_COUNT)]
    db.session.add_all(RecoveryCode(id=new_id(), user_id=user_id, created_at=now,
                                    code_hash=_recovery_hash(secrets_.normalise_recovery_code(code)))
                       for code in codes)
    return codes


def regenerate_recovery_codes(caller: sessions.Caller, now: datetime) -> list[str]:
    user = caller.user
    if not has_second_factor(user.id):
        raise NotFound(N_("Recovery codes come with a second factor; set up TOTP or a passkey first."))
    codes = _new_recovery_codes(user.id, now)
    factor_changed(user, caller.session_id, ADDED, "a new set of recovery codes (the old ones no longer work)", now,
                   kind=RECOVERY_CODES, event="recovery_codes_regenerated")
    return codes


def spend_recovery_code(user_id: str, code: str, now: datetime) -> bool:
    """True when `code` is one of the user's unused recovery codes; used by this one UPDATE (not committed)."""
    normalised = secrets_.normalise_recovery_code(code)
    if normalised is None:
        return False
    return db.session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.code_hash == _recovery_hash(normalised),
               RecoveryCode.used_at.is_(None))
        .values(used_at=now).returning(RecoveryCode.id)
        .execution_options(synchronize_session=False)).first() is not None


def prove_with_code(user_id: str, code: str, now: datetime) -> Proof | None:
    """A TOTP code or a recovery code as the second step; None when it is neither (or spent)."""
    if secrets_.looks_like_totp(code):
        return Proof(("pwd", "otp", "mfa"), 2) if spend_totp(user_id, code, now) else None
    if spend_recovery_code(user_id, code, now):
        return Proof(("pwd", "otp", "mfa"), 2)
    return None


# ---- admin -------------------------------------------------------------------------------------

def reset(user: User, now: datetime) -> None:
    """Every factor and recovery code of the user removed (a lost phone); mailed, every session revoked."""
    for model in (MfaTotp, RecoveryCode, Passkey):
        db.session.execute(delete(model).where(model.user_id == user.id))
    changed(user, None, "mfa-reset", {}, now, event="mfa_reset")
