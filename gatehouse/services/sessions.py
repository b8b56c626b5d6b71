"""Sessions and devices: start one at sign-in, authenticate a request, revoke."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from types import SimpleNamespace

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm.attributes import set_committed_value

from gatehouse.database import upsert_insert
from gatehouse.errors import TokenRevoked
from gatehouse.extensions import db
from gatehouse.models import Device, RefreshToken, Session, Subscription, User, UserSettings
from gatehouse.models.rows import columns_of, insert_row, read
from gatehouse.models.types import new_id
from gatehouse.params import DeviceParams, row_id
from gatehouse.realtime.bus import publish_after_commit
from gatehouse.services import security_events, tokens
from gatehouse.services.security_events import network, stored_address, stored_user_agent
from gatehouse.runtime import setting

TOUCH_INTERVAL = timedelta(minutes=1)


class Caller:
    """Who an authenticated request comes from.

    `snapshot` is what the authenticating read found: the session's and the account's columns as
    plain values (`snapshot.session.device`, `snapshot.user.settings` and `.subscription` with them),
    for the answers that only read them. `session` and `user` are the ORM objects, loaded by primary
    key the first time an endpoint asks for them, by the endpoints that change them.
    """

    def __init__(self, snapshot: SimpleNamespace, claims: dict):
        self.snapshot = snapshot
        self.claims = claims
        self.user_id: str = snapshot.user.id
        self.session_id: str = snapshot.session.id

    @cached_property
    def user(self) -> User:
        return _loaded(User, self.user_id)

    @cached_property
    def session(self) -> Session:
        return _loaded(Session, self.session_id)


def _loaded(model, key: str):
    found = db.session.get(model, key)
    if found is None:  # erased since the authenticating read
        raise TokenRevoked()
    return found


def upsert_device(user_id: str, params: DeviceParams, now: datetime) -> str:
    """The device's row id; (user, client id) is unique, so another user's device never links here."""
    values = dict(user_id=user_id, name=params.name, platform=params.platform,
                  app_version=params.app_version, last_seen_at=now)
    if params.id is None:
        device = Device(client_id=None, created_at=now, **values)
        db.session.add(device)
        db.session.flush()
        return device.id
    statement = upsert_insert(Device).values(id=new_id(), client_id=params.id, created_at=now, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[Device.user_id, Device.client_id],
        set_={"name": params.name, "platform": params.platform, "app_version": params.app_version,
              "last_seen_at": now},
    ).returning(Device.id)
    return db.session.execute(statement).scalar_one()


def start(user: User, device: DeviceParams | None, *, ip_address: str | None, user_agent: str | None,
          now: datetime, kind: str = "api", amr: tuple[str, ...] = ("pwd",), aal: int = 1) -> Session:
    """A new session (written, not committed) with an absolute expiry of REFRESH_TOKEN_TTL, signed in
    now by the methods `amr` (RFC 8176) at assurance level `aal`."""
    device_row = db.session.get(Device, upsert_device(user.id, device, now)) if device is not None else None
    return insert_row(Session, dict(
        id=new_id(), user_id=user.id, device_id=device_row.id if device_row is not None else None, kind=kind,
        created_at=now, last_seen_at=now, expires_at=now + timedelta(seconds=setting("REFRESH_TOKEN_TTL")),
        revoked_at=None, ip_address=stored_address(ip_address), network=network(ip_address),
        user_agent=stored_user_agent(user_agent), auth_time=now, amr=" ".join(amr), aal=aal), device=device_row)


# A sign-in's time on its account, written at once like the sign-in's other rows (models/rows.py).
_SIGNED_IN = (update(User).where(User.id == bindparam("key"))
              .values(last_login_at=bindparam("now", type_=User.last_login_at.type)))


def stamp_sign_in(user: User, now: datetime) -> None:
    """`user.last_login_at = now`, written by one prepared UPDATE in the transaction in progress."""
    db.session.connection().execute(_SIGNED_IN, {"key": user.id, "now": now})
    set_committed_value(user, "last_login_at", now)


# The caller's rows, each a run of plain columns in one statement (built once: constructing it cost
# more CPU than running it). The ORM's five objects per request cost twice the Core row.
_PARTS = {"session": columns_of(Session), "device": columns_of(Device),
          "user": columns_of(User, leaving=("password_hash",)),  # never carried around with the caller
          "settings": columns_of(UserSettings), "subscription": columns_of(Subscription)}
_CALLER = (select(*(column for part in _PARTS.values() for _, column in part))
           .select_from(Session)
           .join(User, User.id == Session.user_id)
           .outerjoin(Device, Device.id == Session.device_id)
           .outerjoin(UserSettings, UserSettings.user_id == User.id)
           .outerjoin(Subscription, Subscription.user_id == User.id)
           .where(Session.id == bindparam("session_id"), Session.live_at(bindparam("now", type_=Session.expires_at.type)),
                  User.active))


def _slices() -> dict[str, tuple[tuple[str, ...], slice]]:
    spans, start = {}, 0
    for name, part in _PARTS.items():
        spans[name] = (tuple(key for key, _ in part), slice(start, start + len(part)))
        start += len(part)
    return spans


_SPANS = _slices()


def _snapshot(row) -> SimpleNamespace:
    parts = {name: dict(zip(keys, row[span])) for name, (keys, span) in _SPANS.items()}
    device, settings, subscription = parts["device"], parts["settings"], parts["subscription"]
    session = SimpleNamespace(**parts["session"], device=SimpleNamespace(**device) if device["id"] else None)
    user = SimpleNamespace(**parts["user"], settings=SimpleNamespace(**settings) if settings["user_id"] else None,
                           subscription=SimpleNamespace(**subscription) if subscription["user_id"] else None)
    return SimpleNamespace(session=session, user=user)


def live_caller(session_id: str | None, now: datetime, *, user_id: str | None = None, kind: str | None = None,
                claims: dict | None = None) -> Caller:
    """The caller behind a session id: one indexed look-up of the session and its account.

    TokenRevoked unless the session exists, is live, belongs to `user_id` and is of `kind` (when
    given), and its account is active. Every way in (access token, portal cookie, WebSocket ticket)
    goes through here, so revocation means the same thing everywhere.
    """
    session_id = row_id(session_id) if isinstance(session_id, str) else None
    rows = read(_CALLER, {"session_id": session_id, "now": now}) if session_id is not None else []
    if not rows:
        raise TokenRevoked()
    snapshot = _snapshot(rows[0])
    if (user_id is not None and snapshot.user.id != user_id) or (kind is not None and snapshot.session.kind != kind):
        raise TokenRevoked()
    return Caller(snapshot, claims or {})


@dataclass(frozen=True)
class Member:
    """Who holds a live session, without the account's rows: what a WebSocket needs to know."""

    user_id: str
    session_id: str
    role: str

    @classmethod
    def of(cls, caller: Caller) -> "Member":
        return cls(caller.user_id, caller.session_id, caller.snapshot.user.role)


_MEMBERS = (select(Session.id, Session.user_id, User.role).join(User, User.id == Session.user_id)
            .where(Session.id.in_(bindparam("session_ids", expanding=True)),
                   Session.live_at(bindparam("now", type_=Session.expires_at.type)), User.active))


def live_members(session_ids: list[str], now: datetime) -> dict[str, Member]:
    """The holders of those of `session_ids` that are live with an active account (the rule of
    live_caller), in one indexed look-up of plain columns: a WebSocket handshake, and the periodic
    re-check of many WebSockets at once."""
    if not session_ids:
        return {}
    rows = read(_MEMBERS, {"session_ids": list(session_ids), "now": now})
    return {session_id: Member(user_id, session_id, role) for session_id, user_id, role in rows}


def live_roles(session_ids: list[str], now: datetime) -> dict[str, str]:
    """The account's role of each of `session_ids` that is live with an active account (a WebSocket
    re-check: the others are gone)."""
    return {session_id: member.role for session_id, member in live_members(session_ids, now).items()}


def renewal(access_token: str, now: datetime) -> tuple[str, str, int]:
    """A WebSocket's session:renew: the fresh token's session id, its account's role and its expiry (epoch)."""
    member, claims = verify(access_token, now)
    return member.session_id, member.role, claims["exp"]


def verify(access_token: str, now: datetime) -> tuple[Member, dict]:
    """authenticate() for a caller that needs only who it is: the token's holder and its claims."""
    claims = tokens.decode_access(access_token)
    session_id = row_id(claims["sid"]) if isinstance(claims.get("sid"), str) else None
    member = live_members([session_id], now).get(session_id) if session_id is not None else None
    if member is None or member.user_id != claims["sub"]:
        raise TokenRevoked()
    return member, claims


def authenticate(access_token: str, now: datetime) -> Caller:
    """Verify an access token and that its session is live."""
    claims = tokens.decode_access(access_token)
    return live_caller(claims["sid"], now, user_id=claims["sub"], claims=claims)


def resume(session_id: str | None, now: datetime) -> Caller:
    """The caller of a portal sign-in, named by the session id its signed cookie holds.

    Besides its absolute lifetime, a portal session ends after PORTAL_IDLE_SECONDS without a
    request (lastSeenAt, renewed at most once a minute): it is then revoked, and TokenRevoked.
    """
    caller = live_caller(session_id, now, kind="portal")
    if now - caller.snapshot.session.last_seen_at > timedelta(seconds=setting("PORTAL_IDLE_SECONDS")):
        revoke(caller.user_id, [caller.session_id], now)
        db.session.commit()
        raise TokenRevoked("The session ended after a time without activity; sign in again.")
    return caller


def touch(session: Session | SimpleNamespace, now: datetime) -> None:
    """Renew lastSeenAt (of a session or a caller's snapshot of one), at most once a minute so that
    reads stay cheap."""
    if now - session.last_seen_at >= TOUCH_INTERVAL:
        db.session.execute(update(Session).where(Session.id == session.id).values(last_seen_at=now))
        db.session.commit()
        session.last_seen_at = now


def _revoke(user_id: str, now: datetime, *conditions) -> list[str]:
    revoked = db.session.execute(
        update(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None), *conditions)
        .values(revoked_at=now)
        .returning(Session.id)
    ).scalars().all()
    if revoked:
        db.session.execute(update(RefreshToken)
                           .where(RefreshToken.session_id.in_(revoked), RefreshToken.revoked_at.is_(None))
                           .values(revoked_at=now))
    for session_id in revoked:
        publish_after_commit(user_id, "session:revoked", {"sessionId": session_id})
    return list(revoked)


def revoke(user_id: str, session_ids: list[str], now: datetime) -> list[str]:
    """Revoke these sessions of the user (others' ids are ignored) and their refresh tokens, in the
    caller's transaction; `session:revoked` goes out when it commits. The ids that were live until now.
    """
    if not session_ids:
        return []
    return _revoke(user_id, now, Session.id.in_(session_ids))


def revoke_all(user_id: str, now: datetime, *, except_id: str | None = None) -> list[str]:
    """Revoke every session of the user, but for `except_id` (the caller's own, when it stays)."""
    conditions = [Session.id != except_id] if except_id is not None else []
    return _revoke(user_id, now, *conditions)


def live_of_user(user_id: str, now: datetime) -> list[Session]:
    """The user's sessions that are neither revoked nor expired, most recently seen first."""
    return list(db.session.scalars(
        select(Session)
        .where(Session.user_id == user_id, Session.live_at(now))
        .order_by(Session.last_seen_at.desc(), Session.created_at.desc())
    ).unique())


def revoke_one(user_id: str, session_id: str, now: datetime) -> bool:
    """Revoke one of the user's sessions not yet revoked; False when there is none such (or the id is malformed)."""
    session_id = row_id(session_id)
    if session_id is None:
        return False
    # Locked, so that of two concurrent revocations of one session only one records it.
    live = db.session.execute(select(Session.id, Session.device_id).where(
        Session.id == session_id, Session.user_id == user_id, Session.revoked_at.is_(None)).with_for_update()).first()
    if live is None:
        db.session.rollback()
        return False
    security_events.record(user_id, "session_revoked", now, session_id=session_id, device_id=live.device_id)
    revoked = revoke(user_id, [session_id], now)
    db.session.commit()
    return bool(revoked)
