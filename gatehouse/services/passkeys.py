"""Passkeys: registration, removal, and assertions as a second factor or a passwordless sign-in.

A ceremony's challenge is a `webauthn_challenges` row holding only its SHA-256; the browser signs
the challenge, so the answer names it, and one UPDATE (unused, unexpired, this purpose and user)
spends it: a replayed answer finds nothing to spend. A credential's signature counter is raised
by one UPDATE guarded by `sign_count < new`, so a cloned authenticator's older count is refused
even when two assertions race.
"""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from gatehouse.errors import FactorExists, NotFound, WebauthnFailed
from gatehouse.extensions import db
from gatehouse.i18n import N_
from gatehouse.models import Passkey, User, WebauthnChallenge
from gatehouse.models.types import new_id
from gatehouse.params import AuthenticationResponseJSON, RegistrationResponseJSON, row_id
from gatehouse.security import passkeys as webauthn
from gatehouse.security.tokens import sha256_hex
from gatehouse.services import factors, sessions
from gatehouse.services.factors import Proof
from gatehouse.runtime import setting

CHALLENGE_TTL = timedelta(minutes=5)


def party() -> webauthn.Party:
    return webauthn.Party(setting("WEBAUTHN_RP_ID"), setting("WEBAUTHN_ORIGINS"))


def _challenge_hash(challenge: bytes) -> str:
    return sha256_hex(challenge.hex())


def new_challenge(user_id: str | None, purpose: str, now: datetime) -> tuple[str, bytes]:
    """A fresh 32-byte challenge stored as its hash (added, not committed); expired ones are swept."""
    db.session.execute(delete(WebauthnChallenge).where(WebauthnChallenge.expires_at <= now))
    challenge = secrets.token_bytes(32)
    row = WebauthnChallenge(id=new_id(), user_id=user_id, purpose=purpose, challenge_hash=_challenge_hash(challenge),
                            expires_at=now + CHALLENGE_TTL)
    db.session.add(row)
    return row.id, challenge


def spend_challenge(credential: dict, purpose: str, now: datetime, *, user_id: str | None = None,
                    challenge_id: str | None = None) -> bytes:
    """The challenge the answer signed, spent by one UPDATE (not committed); webauthn_failed when it is
    unknown, used, expired, of another purpose or of another user."""
    challenge = webauthn.challenge_of(credential)
    conditions = [WebauthnChallenge.challenge_hash == _challenge_hash(challenge),
                  WebauthnChallenge.purpose == purpose, WebauthnChallenge.used_at.is_(None),
                  WebauthnChallenge.expires_at > now]
    if user_id is not None:
        conditions.append(WebauthnChallenge.user_id == user_id)
    if challenge_id is not None:
        conditions.append(WebauthnChallenge.id == (row_id(challenge_id) or ""))
    spent = db.session.execute(update(WebauthnChallenge).where(*conditions).values(used_at=now)
                               .returning(WebauthnChallenge.id)
                               .execution_options(synchronize_session=False)).scalar_one_or_none()
    if spent is None:
        db.session.commit()
        raise WebauthnFailed(N_("The passkey answered a challenge that is unknown, used or expired; start again."))
    return challenge


def _user_handle(user: User) -> bytes:
    return uuid.UUID(user.id).bytes


def _credentials(user_id: str) -> list[tuple[str, list | None]]:
    return [(p.credential_id, p.transports) for p in
            db.session.scalars(select(Passkey).where(Passkey.user_id == user_id))]


# ---- registration ------------------------------------------------------------------------------

def creation_options(caller: sessions.Caller, now: datetime) -> dict:
    user = caller.user
    _, challenge = new_challenge(user.id, "register", now)
    options = webauthn.creation_options(party(), user_handle=_user_handle(user), user_name=user.email,
                                        display_name=user.display_name or user.username or user.email,
                                        challenge=challenge, exclude=_credentials(user.id))
    db.session.commit()
    return options


def register(caller: sessions.Caller, credential: RegistrationResponseJSON, name: str | None,
             now: datetime) -> Passkey:
    user = caller.user
    data = credential.as_json()
    challenge = spend_challenge(data, "register", now, user_id=user.id)
    try:
        new = webauthn.verify_registration(party(), data, challenge)
    except WebauthnFailed:
        db.session.commit()  # the challenge stays spent
        raise
    first = not factors.has_second_factor(user.id)
    passkey = Passkey(id=new_id(), user_id=user.id, credential_id=new.credential_id, public_key=new.public_key,
                      sign_count=new.sign_count, name=name or "Passkey", transports=credential.response.transports,
                      backed_up=new.backed_up, created_at=now)
    db.session.add(passkey)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise FactorExists(N_("This passkey is already registered.")) from None
    if first:
        # The passkey just made is a second factor: this session reaches AAL2 and may go on changing factors.
        factors.raise_session(caller.session, _proof(new.user_verified, new.backed_up, password=True), now)
    factors.factor_changed(user, caller.session_id, factors.ADDED, f"a passkey named “{passkey.name}”", now,
                           kind=factors.PASSKEY, name=passkey.name, event="passkey_added",
                           detail={"passkeyId": passkey.id, "name": passkey.name})
    return passkey


def remove(caller: sessions.Caller, passkey_id: str, now: datetime) -> None:
    user = caller.user
    found = row_id(passkey_id)
    removed = db.session.execute(delete(Passkey).where(Passkey.id == (found or ""), Passkey.user_id == user.id)
                                 .returning(Passkey.id, Passkey.name)).one_or_none()
    name = removed.name if removed is not None else None
    if name is None:
        db.session.rollback()
        raise NotFound(N_("No such passkey."))
    factors.forget_codes_without_factor(user.id)
    factors.factor_changed(user, caller.session_id, factors.REMOVED, f"the passkey named “{name}”", now,
                           kind=factors.PASSKEY, name=name, event="passkey_removed",
                           detail={"passkeyId": removed.id, "name": name})


# ---- assertions --------------------------------------------------------------------------------

def request_options(user_id: str | None, purpose: str, now: datetime) -> tuple[str, dict]:
    """Request options for the user's passkeys (or, without a user, for any discoverable one) and the
    challenge's id; committed."""
    challenge_id, challenge = new_challenge(user_id, purpose, now)
    options = webauthn.request_options(party(), challenge=challenge,
                                       allow=_credentials(user_id) if user_id is not None else [])
    db.session.commit()
    return challenge_id, options


def _proof(user_verified: bool, backed_up: bool, *, password: bool) -> Proof:
    """RFC 8176: a synced (backed-up) passkey is a software key, else hardware; user verification
    (PIN or biometrics) is the second factor a passkey carries itself."""
    key = "swk" if backed_up else "hwk"
    if password:
        return Proof(("pwd", key, "user", "mfa") if user_verified else ("pwd", key, "mfa"), 2)
    return Proof((key, "user", "mfa"), 2) if user_verified else Proof((key,), 1)


def assert_passkey(credential: AuthenticationResponseJSON, purpose: str, now: datetime, *,
                   user_id: str | None = None, challenge_id: str | None = None) -> tuple[Passkey, Proof]:
    """Verify an assertion and raise the credential's counter (not committed); webauthn_failed otherwise.

    With `user_id`, the passkey must be that user's; without, the credential names its user.
    """
    data = credential.as_json()
    challenge = spend_challenge(data, purpose, now, user_id=user_id, challenge_id=challenge_id)
    conditions = [Passkey.credential_id == credential.raw_id]
    if user_id is not None:
        conditions.append(Passkey.user_id == user_id)
    passkey = db.session.scalar(select(Passkey).where(*conditions))
    try:
        if passkey is None:
            raise WebauthnFailed(N_("This passkey is not registered with this account."))
        verified = webauthn.verify_assertion(party(), data, challenge, public_key=passkey.public_key,
                                             sign_count=passkey.sign_count)
        counted = db.session.execute(
            update(Passkey)
            .where(Passkey.id == passkey.id,
                   (Passkey.sign_count < verified.new_sign_count) | (Passkey.sign_count == 0))
            .values(sign_count=verified.new_sign_count, last_used_at=now, backed_up=verified.backed_up)
            .returning(Passkey.id).execution_options(synchronize_session=False)).scalar_one_or_none()
        if counted is None:
            raise WebauthnFailed(N_("The passkey's signature counter went backwards; it may have been cloned."))
    except WebauthnFailed:
        db.session.commit()  # the challenge stays spent
        raise
    return passkey, _proof(verified.user_verified, verified.backed_up, password=purpose != "login")
