"""The second step of a sign-in (mfaToken), passwordless passkey sign-in, and step-up (fresh, reauthenticate).

A right password for an account with a second factor opens no session: it leaves an
`mfa_challenges` row (the mfaToken's SHA-256, the sign-in's identifier and device data, 5 minutes,
5 tries) and answers mfa_required. Each code checked first takes one of the 5 tries in one atomic
UPDATE, so concurrent guesses cannot exceed them; a wrong code also counts toward the
identifier's sign-in backoff, and the backoff is reset only when the second step succeeds.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from gatehouse.clock import iso_z
from gatehouse.errors import (GatehouseError, InvalidCredentials, InvalidMfaCode, MfaRequired, ReauthenticationRequired,
                              TokenInvalid, ValidationFailed)
from gatehouse.extensions import db
from gatehouse.i18n import N_
from gatehouse.models import MfaChallenge, User
from gatehouse.models.types import new_id
from gatehouse.params import (AuthenticationResponseJSON, DeviceParams, LoginParams, MfaVerifyParams,
                              PasskeyLoginParams, ReauthenticateParams)
from gatehouse.security.factors import looks_like_totp
from gatehouse.security.tokens import new_ticket, same, sha256_hex
from gatehouse.services import alerts, factors, passkeys, security_events, sessions, throttle, tokens
from gatehouse.services.accounts import SignIn, verify_current_password
from gatehouse.services.factors import Proof
from gatehouse.runtime import setting

MFA_TOKEN_TTL = timedelta(minutes=5)
MAX_TRIES = 5


# ---- fresh -------------------------------------------------------------------------------------

def require_fresh(caller: sessions.Caller, now: datetime) -> None:
    """401 reauthentication_required unless the session proved the user within REAUTH_MAX_AGE seconds,
    and at AAL2 when the account has a second factor."""
    session = caller.snapshot.session
    auth_time = session.auth_time or session.created_at
    if (now - auth_time).total_seconds() > setting("REAUTH_MAX_AGE"):
        raise ReauthenticationRequired(N_("This change needs a recent sign-in; confirm who you are with "
                                          "POST /auth/reauthenticate."))
    if session.aal < 2 and factors.has_second_factor(caller.user_id):
        raise ReauthenticationRequired(N_("This account has a second factor; confirm who you are with it "
                                          "(POST /auth/reauthenticate) before this change."))


# ---- sign-in with a second factor --------------------------------------------------------------

def require_second_step(user: User, params: LoginParams, methods: list[str], *, ip_address: str | None,
                        user_agent: str | None, now: datetime, kind: str) -> None:
    """Commit an mfa challenge for this sign-in and raise mfa_required with its mfaToken."""
    token = new_ticket()
    expires_at = now + MFA_TOKEN_TTL
    db.session.execute(delete(MfaChallenge).where(MfaChallenge.expires_at <= now))
    db.session.add(MfaChallenge(
        id=new_id(), user_id=user.id, token_hash=sha256_hex(token), identifier=params.identifier, kind=kind,
        ip_address=sessions.stored_address(ip_address), user_agent=sessions.stored_user_agent(user_agent),
        device=params.device.model_dump(by_alias=True) if params.device else None, tries=0, created_at=now,
        expires_at=expires_at))
    db.session.commit()
    raise MfaRequired(extensions={"mfaToken": token, "methods": methods, "expiresAt": iso_z(expires_at)})


def _live(token: str, now: datetime):
    return (MfaChallenge.token_hash == sha256_hex(token), MfaChallenge.used_at.is_(None),
            MfaChallenge.expires_at > now)


def _dead() -> TokenInvalid:
    return TokenInvalid(N_("The sign-in has expired or was refused too often; sign in with your password again."))


def _take_try(token: str, user_agent: str | None, now: datetime) -> MfaChallenge:
    """One of the challenge's 5 tries, taken and committed at once; token_invalid when none is left.

    The challenge is bound to its sign-in: another user agent than the password's is refused.
    """
    challenge = db.session.execute(
        update(MfaChallenge).where(*_live(token, now), MfaChallenge.tries < MAX_TRIES)
        .values(tries=MfaChallenge.tries + 1).returning(MfaChallenge)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    db.session.commit()
    if challenge is None or not same(challenge.user_agent or "", sessions.stored_user_agent(user_agent) or ""):
        raise _dead()
    return challenge


def passkey_options(token: str, now: datetime) -> dict:
    """Request options for the passkeys of the user an mfaToken is waiting for (no try is taken)."""
    user_id = db.session.scalar(select(MfaChallenge.user_id).where(*_live(token, now),
                                                                   MfaChallenge.tries < MAX_TRIES))
    if user_id is None:
        raise _dead()
    return passkeys.request_options(user_id, "mfa", now)[1]


def _prove(user_id: str, code: str | None, credential: AuthenticationResponseJSON | None, purpose: str,
           now: datetime) -> Proof | None:
    if credential is not None:
        return passkeys.assert_passkey(credential, purpose, now, user_id=user_id)[1]
    return factors.prove_with_code(user_id, code, now)


def _open_session(user: User, device: DeviceParams | None, proof: Proof, *, ip_address: str | None,
                  user_agent: str | None, now: datetime, kind: str) -> SignIn:
    new = alerts.is_new(user.id, device, ip_address, now)
    sessions.stamp_sign_in(user, now)
    session = sessions.start(user, device, ip_address=ip_address, user_agent=user_agent, now=now, kind=kind,
                             amr=proof.amr, aal=proof.aal)
    pair = tokens.issue(user, session, now)
    alerts.signed_in(user, session, now, new=new)
    return SignIn(user, session, pair)


def verify(params: MfaVerifyParams, *, user_agent: str | None, now: datetime) -> SignIn:
    """The second step: a TOTP code, a recovery code or a passkey assertion opens the session that the
    password asked for (its device, address and kind). A recovery code used is mailed and signs
    every other session out."""
    challenge = _take_try(params.mfa_token, user_agent, now)
    user = db.session.get(User, challenge.user_id)
    throttle.check(challenge.identifier, now, user)
    try:
        proof = _prove(user.id, params.code, params.credential, "mfa", now) if user.active else None
    except GatehouseError:  # a passkey answer that failed counts like a wrong code
        throttle.failed(challenge.identifier, now, user)
        raise
    if proof is None:
        db.session.rollback()
        security_events.record(user.id, "sign_in_failed", now,
                               client=security_events.Client(challenge.ip_address, challenge.user_agent),
                               detail={"reason": "wrong_second_factor"})
        throttle.failed(challenge.identifier, now, user)
        db.session.commit()  # the failure's event, also when the counters are off
        raise InvalidMfaCode(errors=[{"field": "code", "message": N_("is wrong, already used or expired")}])
    spent = db.session.execute(
        update(MfaChallenge).where(MfaChallenge.id == challenge.id, *_live(params.mfa_token, now))
        .values(used_at=now).returning(MfaChallenge.id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    if spent is None:  # a concurrent right answer opened the session first
        db.session.rollback()
        raise _dead()
    throttle.succeeded(challenge.identifier, user)
    device = DeviceParams.model_validate(challenge.device) if challenge.device else None
    result = _open_session(user, device, proof, ip_address=challenge.ip_address, user_agent=challenge.user_agent,
                           now=now, kind=challenge.kind)
    _commit_noting_recovery_code(user, params.code, result.session.id, now)
    return result


def _commit_noting_recovery_code(user: User, code: str | None, session_id: str, now: datetime) -> None:
    """Commit the second step; a recovery code used is mailed and signs every other session out."""
    if code is not None and not looks_like_totp(code):
        left = factors.recovery_codes_left(user.id)
        factors.changed(user, session_id, "recovery-code-used", {"left": left}, now, event="recovery_code_used",
                        detail={"left": left})  # commits
    else:
        db.session.commit()


# ---- passwordless ------------------------------------------------------------------------------

def passkey_login(params: PasskeyLoginParams, *, ip_address: str | None, user_agent: str | None, now: datetime,
                  kind: str = "api") -> SignIn:
    """A discoverable passkey alone signs in; a user-verified one counts as two factors (AAL2)."""
    passkey, proof = passkeys.assert_passkey(params.credential, "login", now, challenge_id=params.challenge_id)
    user = db.session.get(User, passkey.user_id)
    if not user.active:
        db.session.commit()
        raise InvalidCredentials()
    result = _open_session(user, params.device, proof, ip_address=ip_address, user_agent=user_agent, now=now,
                           kind=kind)
    db.session.commit()
    return result


# ---- step-up -----------------------------------------------------------------------------------

def reauthenticate(caller: sessions.Caller, params: ReauthenticateParams, now: datetime, *,
                   issue: bool = True) -> tokens.TokenPair | None:
    """The password again (and the second factor when the account has one): the session's auth_time
    is now, and (with `issue`; a portal session holds no tokens) a new pair carries it."""
    user = caller.user
    verify_current_password(user, params.password, now)
    proof = Proof(("pwd",), 1)
    if factors.has_second_factor(user.id):
        if params.code is None and params.credential is None:
            raise ValidationFailed(N_("This account has a second factor: give code or credential as well."),
                                   errors=[{"field": "code", "message": N_("is required for this account")}])
        proof = _prove(user.id, params.code, params.credential, "reauth", now)
        if proof is None:
            db.session.rollback()
            throttle.failed(user.email_key, now, user)
            raise InvalidMfaCode(errors=[{"field": "code", "message": N_("is wrong, already used or expired")}])
    session = db.session.merge(caller.session)
    factors.raise_session(session, proof, now)
    pair = tokens.issue(user, session, now) if issue else None
    _commit_noting_recovery_code(user, params.code, session.id, now)
    return pair


def reauth_passkey_options(caller: sessions.Caller, now: datetime) -> dict:
    return passkeys.request_options(caller.user_id, "reauth", now)[1]
