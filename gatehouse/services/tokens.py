"""Access tokens (issue, verify) and each session's refresh-token family: spend, rotate, detect reuse
(RFC 9700). The time is passed in."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import jwt as pyjwt
from flask import current_app
from flask_jwt_extended import create_access_token
from sqlalchemy import bindparam, func, insert, select, update

from gatehouse.database import is_postgres
from gatehouse.errors import RefreshTokenReused, TokenExpired, TokenInvalid, TokenRevoked
from gatehouse.extensions import db
from gatehouse.models import RefreshToken, Session, User
from gatehouse.models.types import UTCDateTime, new_id
from gatehouse.security.tokens import new_refresh_token, sha256_hex
from gatehouse.runtime import setting

REQUIRED_CLAIMS = ("sub", "sid", "jti", "iat", "exp", "type", "iss", "aud")
# RFC 9068 §2.1 / RFC 8725 §3.11: access tokens are explicitly typed, so no other JWT passes for one.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    issued_at: datetime
    expires_at: datetime
    refresh_expires_at: datetime


@dataclass(frozen=True)
class Holder:
    """What an access token says of its session and account: the claims' source."""

    user_id: str
    role: str
    region: str
    currency: str
    session_id: str
    amr: str  # RFC 8176 methods, space-separated, as stored
    aal: int
    auth_time: datetime
    session_expires_at: datetime

    @classmethod
    def of(cls, user: User, session: Session) -> "Holder":
        return cls(user.id, user.role, user.region, user.currency, session.id, session.amr, session.aal,
                   session.auth_time or session.created_at, session.expires_at)


def access_token(holder: Holder, now: datetime) -> tuple[str, datetime]:
    expires_at = now + timedelta(seconds=setting("ACCESS_TOKEN_TTL"))
    signing = setting("JWT_SIGNING_KEY")
    token = create_access_token(
        identity=holder.user_id,
        additional_headers={"typ": "at+jwt", **({"kid": signing.kid} if signing is not None else {})},
        additional_claims={
            "sid": holder.session_id, "jti": new_id(), "iat": now, "exp": expires_at,
            "role": holder.role, "region": holder.region, "currency": holder.currency,
            # How the session was signed in; a refresh keeps them, /auth/reauthenticate renews them.
            "amr": holder.amr.split(), "aal": holder.aal, "auth_time": int(holder.auth_time.timestamp()),
        },
    )
    return token, expires_at


# A stored session's next refresh token: one prebuilt INSERT (a refresh has no other object to flush,
# and the unit of work cost more CPU than the statement).
_INSERT = insert(RefreshToken).values(id=bindparam("id"), session_id=bindparam("session_id"),
                                      token_hash=bindparam("hash"), created_at=bindparam("now", type_=UTCDateTime))


def issue(user: User, session: Session, now: datetime) -> TokenPair:
    """A new access token and a new refresh token of the session's family (written in the caller's
    transaction, not committed)."""
    refresh = new_refresh_token()
    _store(session.id, refresh, now)
    return _pair(Holder.of(user, session), refresh, now)


def _store(session_id: str, refresh_token: str, now: datetime) -> None:
    db.session.connection().execute(_INSERT, {"id": new_id(), "session_id": session_id,
                                              "hash": sha256_hex(refresh_token), "now": now})


def _pair(holder: Holder, refresh_token: str, now: datetime) -> TokenPair:
    token, expires_at = access_token(holder, now)
    return TokenPair(token, refresh_token, now, expires_at, holder.session_expires_at)


def decode_access(token: str) -> dict:
    """The verified claims of an access token; 401 errors for anything else.

    Verified with the one configured algorithm and key in a single PyJWT pass; flask-jwt-extended
    issues the tokens. A token's signature and fixed claims are a pure function of the token and the
    key, so each process remembers the last VERIFIED_TOKENS tokens it verified (never a token that
    failed) and checks only their times again: a client sends the same token with every request
    until it refreshes. Revocation is not part of this; the session is looked up on every request.
    """
    verified = current_app.extensions.get("gatehouse.verified_tokens")
    if verified is None:
        verified = current_app.extensions.setdefault("gatehouse.verified_tokens",
                                                     lru_cache(maxsize=VERIFIED_TOKENS)(_verify))
    claims = verified(token)
    moment = time.time()
    if claims["exp"] <= moment:
        raise TokenExpired()
    if claims["iat"] > moment or claims.get("nbf", moment) > moment:
        raise TokenInvalid()
    return dict(claims)


VERIFIED_TOKENS = 4096


def _verify(token: str) -> dict:
    config = current_app.config
    signing = config["JWT_SIGNING_KEY"]
    key = signing.public_key if signing is not None else config["JWT_SECRET_KEY"]
    try:
        decoded = pyjwt.decode_complete(token, key, algorithms=config["JWT_DECODE_ALGORITHMS"],
                                        issuer=config["TOKEN_ISSUER"], audience=config["JWT_AUDIENCE"],
                                        options={"require": list(REQUIRED_CLAIMS)})
    except pyjwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except pyjwt.InvalidTokenError:  # bad signature, alg none, malformed, missing claims, iss, aud
        raise TokenInvalid() from None
    claims = decoded["payload"]
    typ = decoded["header"].get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES or claims.get("type") != "access":
        raise TokenInvalid()
    return claims


# Built once, like every statement of the hot paths: building one costs more CPU than running it.
_SPEND = (
    update(RefreshToken)
    .where(RefreshToken.token_hash == bindparam("hash"), RefreshToken.spent_at.is_(None),
           RefreshToken.revoked_at.is_(None),
           select(Session.id).where(Session.id == RefreshToken.session_id,
                                    Session.live_at(bindparam("now", type_=UTCDateTime))).exists())
    .values(spent_at=bindparam("now", type_=UTCDateTime))
    .returning(RefreshToken.session_id)
)


def _spend_and_issue(refresh_token: str, next_token: str, now: datetime) -> dict | None:
    """Spend a live refresh token in one atomic statement and store `next_token` in its family, in the
    session's transaction; the holder of its session (Holder's fields and `active`), or None when it
    was not live (nothing written).

    The session is checked by its primary key, correlated to the one token row the unique hash
    finds: the cost stays flat however many sessions exist (an `IN (SELECT …)` over the live
    sessions would read them all). On PostgreSQL the spend, the holder read and the insert are one
    statement (data-modifying CTEs: one round trip, not three); SQLite has no writes in a CTE, so
    there they are three statements. Core statements: no loaded object holds a refresh token to
    keep in step.
    """
    conn = db.session.connection()
    spent = {"hash": sha256_hex(refresh_token), "now": now}
    if is_postgres():
        row = conn.execute(_ROTATE, {**spent, "next_id": new_id(), "next_hash": sha256_hex(next_token)}).one_or_none()
        return dict(row._mapping) if row is not None else None
    session_id = conn.execute(_SPEND, spent).scalar_one_or_none()
    if session_id is None:
        return None
    found = dict(conn.execute(_HOLDER, {"session_id": session_id}).one()._mapping)
    _store(session_id, next_token, now)
    return found


# The holder of a session just spent from, with its account's state: plain columns by primary keys,
# each named as Holder's field.
_HOLDER_COLUMNS = (Session.user_id.label("user_id"), User.role.label("role"), User.region.label("region"),
                   User.currency.label("currency"), Session.id.label("session_id"), Session.amr.label("amr"),
                   Session.aal.label("aal"),
                   func.coalesce(Session.auth_time, Session.created_at, type_=UTCDateTime).label("auth_time"),
                   Session.expires_at.label("session_expires_at"), User.active.label("active"))
_HOLDERS = select(*_HOLDER_COLUMNS).join(User, User.id == Session.user_id)
_HOLDER = _HOLDERS.where(Session.id == bindparam("session_id"))

# PostgreSQL: _SPEND, _INSERT and _HOLDER in one statement. The insert reads the spent row, so a token
# that was not live inserts nothing; a holder found inactive is rolled back with the rest. (No
# parameter is named as a column of refresh_tokens: Core would take it as one more SET of the UPDATE.)
_SPENT = _SPEND.cte("spent")
_ISSUED = insert(RefreshToken).from_select(
    ["id", "session_id", "token_hash", "created_at"],
    select(bindparam("next_id", type_=RefreshToken.id.type), _SPENT.c.session_id,
           bindparam("next_hash", type_=RefreshToken.token_hash.type), bindparam("now", type_=UTCDateTime)),
).cte("issued")
_ROTATE = _HOLDERS.join(_SPENT, _SPENT.c.session_id == Session.id).add_cte(_ISSUED)


def rotate(refresh_token: str, now: datetime) -> TokenPair:
    """Refresh rotation (RFC 9700 §4.14.2), whole: spend the token, and a new pair of its session.

    A token spent before is a reuse: the family is compromised, so its session is revoked and
    `refresh_token_reused` recorded; a session whose account is no longer active is revoked too.
    Commits either way. The write lock (SQLite has one writer) is held from the spend to the commit
    only: the access token is signed after it.
    """
    from gatehouse.services import security_events, sessions  # sessions authenticates with decode_access

    refresh = new_refresh_token()
    found = _spend_and_issue(refresh_token, refresh, now)
    if found is None:
        db.session.rollback()
        error, reused = why_not_live(refresh_token, now)
        if reused is not None:
            security_events.record(reused.user_id, "refresh_token_reused", now, session_id=reused.id,
                                   device_id=reused.device_id)
            sessions.revoke(reused.user_id, [reused.id], now)
            db.session.commit()
        raise error
    active = found.pop("active")
    holder = Holder(**found)
    if not active:
        db.session.rollback()  # the new token with the spend
        sessions.revoke(holder.user_id, [holder.session_id], now)
        db.session.commit()
        raise TokenRevoked()
    db.session.commit()
    return _pair(holder, refresh, now)


def why_not_live(refresh_token: str, now: datetime) -> tuple[Exception, Session | None]:
    """Why a refresh token could not be spent, and its session when it was spent before (a reuse)."""
    found = db.session.execute(
        select(RefreshToken, Session).join(Session, Session.id == RefreshToken.session_id)
        .where(RefreshToken.token_hash == sha256_hex(refresh_token))
    ).one_or_none()
    if found is None:
        return TokenInvalid("The refresh token is not valid."), None
    token, session = found
    if session.revoked_at is not None or token.revoked_at is not None:
        return TokenRevoked(), None
    if session.expires_at <= now:
        return TokenExpired("The session has expired; sign in again."), None
    return RefreshTokenReused(), session
