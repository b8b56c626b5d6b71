"""Sign-up, sign-in, refresh and sign-out."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from gatehouse import metrics, regions
from gatehouse.errors import EmailTaken, GatehouseError, InvalidCredentials, RateLimited, UsernameTaken
from gatehouse.extensions import db
from gatehouse.models import Session, Subscription, User, UserSettings
from gatehouse.models.types import new_id
from gatehouse.params import LoginParams, RegisterParams, email_key, username_key
from gatehouse.security.passwords import check_policy
from gatehouse.services import alerts, link_tokens, security_events, sessions, throttle, tokens
from gatehouse.runtime import hasher, setting
from gatehouse.services.tokens import TokenPair


@dataclass
class SignIn:
    user: User
    session: Session
    tokens: TokenPair


def _taken(exc: IntegrityError) -> Exception:
    """The unique index that refused the row, as the contract's error."""
    message = str(exc.orig)
    if "username_key" in message:
        return UsernameTaken()
    if "email_key" in message:
        return EmailTaken()
    return exc


def hash_new_password(password: str, *, email: str, username: str | None, field: str = "password") -> str:
    """The argon2id hash of a new password once it passes the policy (PASSWORD_MIN_LENGTH, not common,
    not the account's email or username); PasswordTooWeak names `field`. A password change and a
    reset both set theirs through here (a new account checks the policy before its address)."""
    check_policy(password, min_length=setting("PASSWORD_MIN_LENGTH"), email=email, username=username, field=field)
    return hasher().hash(password)


def new_user(*, email: str, password: str, now: datetime, username: str | None = None,
             display_name: str | None = None, region: str | None = None, currency: str | None = None,
             locale: str | None = None, timezone: str | None = None, role: str = "user") -> User:
    """Check the rules of a new account and add its users, user_settings and subscriptions rows.

    Flushes (so a taken email or username is known here) but does not commit.
    """
    key = email_key(email)
    ukey = username_key(username) if username else None
    check_policy(password, min_length=setting("PASSWORD_MIN_LENGTH"), email=email, username=username)
    region, currency = regions.resolve(region, currency, setting("DEFAULT_REGION"))
    # Cheap early answers that spare a hash; the unique indexes below still decide every race.
    if db.session.scalar(select(exists().where(User.email_key == key))) or link_tokens.address_reserved(key, now):
        raise EmailTaken()
    if ukey and db.session.scalar(select(exists().where(User.username_key == ukey))):
        raise UsernameTaken()
    user = User(id=new_id(), email=email, email_key=key, username=username, username_key=ukey,
                display_name=display_name, region=region, currency=currency, locale=locale or "en",
                timezone=timezone or "UTC", role=role, show_status="visible", disabled=False,
                password_hash=hasher().hash(password), created_at=now, updated_at=now, version=1)
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise _taken(exc) from None
    db.session.add(UserSettings(user_id=user.id, preferences={}, updated_at=now))
    db.session.add(Subscription(user_id=user.id, tier="free", status="active", updated_at=now))
    return user


def register(params: RegisterParams, *, ip_address: str | None, user_agent: str | None,
             now: datetime, kind: str = "api") -> SignIn:
    user = new_user(email=params.email, password=params.password, now=now, username=params.username,
                    display_name=params.display_name, region=params.region, currency=params.currency,
                    locale=params.locale, timezone=params.timezone)
    session = sessions.start(user, params.device, ip_address=ip_address, user_agent=user_agent, now=now,
                             kind=kind)
    pair = tokens.issue(user, session, now)
    alerts.signed_in(user, session, now, registration=True)
    from gatehouse.services.recovery import mail_verification_code

    mail_verification_code(user, now)  # in this transaction: no account without its mail
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise _taken(exc) from None
    return SignIn(user, session, pair)


def find_by_identifier(params: LoginParams) -> User | None:
    statement = _BY_EMAIL if params.email is not None else _BY_USERNAME
    return db.session.execute(statement, {"key": params.identifier}).unique().scalar_one_or_none()


# Built once: every sign-in runs one.
_BY_EMAIL = select(User).where(User.email_key == bindparam("key"))
_BY_USERNAME = select(User).where(User.username_key == bindparam("key"))


def verify_current_password(user: User, password: str, now: datetime) -> None:
    """Check the password of a signed-in user (password change, account deletion).

    A wrong password is 401 invalid_credentials, as at sign-in, and counts against the account as
    a sign-in failure would.
    """
    throttle.check(user.email_key, now, user)
    matches, _ = hasher().verify(user.password_hash, password)
    if not matches or user.password_locked_at is not None:
        throttle.failed(user.email_key, now, user)
        raise InvalidCredentials()
    throttle.succeeded(user.email_key, user)


def login(params: LoginParams, *, ip_address: str | None, user_agent: str | None, now: datetime,
          kind: str = "api") -> SignIn:
    """Wrong password, unknown, disabled or deleted account: one answer, comparable time."""
    user = find_by_identifier(params)
    try:
        throttle.check(params.identifier, now, user)
    except RateLimited:
        metrics.signins.labels("rate_limited").inc()
        raise
    matches, needs_rehash = hasher().verify(user.password_hash if user else None, params.password)
    if not matches or not user.active or user.password_locked_at is not None:
        locked = user is not None and user.password_locked_at is not None  # before this failure
        if user is not None:
            security_events.record(user.id, "sign_in_failed", now,
                                   client=security_events.Client.of(ip_address, user_agent),
                                   detail={"reason": "password_locked" if locked else "wrong_password"})
        throttle.failed(params.identifier, now, user)
        db.session.commit()  # the failure's event, also when the counters are off
        metrics.signins.labels("locked" if locked else "invalid_credentials").inc()
        raise InvalidCredentials()
    if needs_rehash:
        user.password_hash = hasher().hash(params.password)
    from gatehouse.services.factors import methods_of
    from gatehouse.services.stepup import require_second_step

    methods = methods_of(user.id)
    if methods:  # no session yet; the backoff is reset only when the second step succeeds
        metrics.signins.labels("mfa_required").inc()
        require_second_step(user, params, methods, ip_address=ip_address, user_agent=user_agent, now=now, kind=kind)
    new = alerts.is_new(user.id, params.device, ip_address, now)
    throttle.succeeded(params.identifier, user)
    metrics.signins.labels("success").inc()
    sessions.stamp_sign_in(user, now)
    session = sessions.start(user, params.device, ip_address=ip_address, user_agent=user_agent, now=now,
                             kind=kind)
    pair = tokens.issue(user, session, now)
    alerts.signed_in(user, session, now, new=new)
    db.session.commit()
    return SignIn(user, session, pair)


# The refresh outcomes of gatehouse_refreshes_total, by the error that refused the token.
REFRESH_OUTCOMES = {"token_invalid": "invalid", "token_expired": "expired", "token_revoked": "revoked",
                    "refresh_token_reused": "reused"}


def refresh(refresh_token: str, now: datetime) -> tokens.TokenPair:
    """POST /auth/refresh: the rotation of services.tokens, counted by outcome."""
    try:
        pair = tokens.rotate(refresh_token, now)
    except GatehouseError as err:
        metrics.refreshes.labels(REFRESH_OUTCOMES.get(err.code, "invalid")).inc()
        raise
    metrics.refreshes.labels("success").inc()
    return pair


def logout(caller: sessions.Caller, *, all_sessions: bool, now: datetime) -> None:
    security_events.record(caller.user_id, "signed_out", now, session_id=caller.session_id,
                           device_id=caller.snapshot.session.device_id, detail={"allSessions": all_sessions})
    if all_sessions:
        sessions.revoke_all(caller.user_id, now)
    else:
        sessions.revoke(caller.user_id, [caller.session_id], now)
    db.session.commit()
