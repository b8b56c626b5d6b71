"""Sign-ins as the account's owner sees them: the `signed_in` event, the "new sign-in" mail, and
"this wasn't me".

A sign-in is new when the account has not used its device id (when the client sends one), or its
network (the address's /24, or /64 for IPv6, when it sends none), in the last KNOWN_FOR. A new one
records `new_device` and mails the owner when, where and with what it happened, with a one-click
"this wasn't me" link: that link (POST /auth/not-me) revokes the session it reported and locks the
password until it is reset. Registration and the first sign-in after it alert nobody.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update

from gatehouse.clock import iso_z
from gatehouse.errors import InvalidCode
from gatehouse.extensions import db
from gatehouse.i18n import N_
from gatehouse.models import Device, LinkToken, Session, User
from gatehouse.outbox import enqueue
from gatehouse.params import DeviceParams
from gatehouse.services import link_tokens, security_events, sessions
from gatehouse.services.security_events import Client, network
from gatehouse.user_agents import describe

KNOWN_FOR = timedelta(days=90)


def is_new(user_id: str, device: DeviceParams | None, ip_address: str | None, now: datetime) -> bool:
    """Whether a sign-in about to open a session comes from somewhere the account has not been lately.

    The account's first sign-in after its registration (at most one session before) is not news.
    One read of two indexed look-ups, whatever the number of sessions, asked before the sign-in
    writes anything, so that its writes still go in one flush.
    """
    since = now - KNOWN_FOR
    if device is not None and device.id is not None:
        found = db.session.execute(_ON_DEVICE, {"user_id": user_id, "client_id": device.id, "since": since})
    else:
        here = network(ip_address)
        if here is None:
            return db.session.scalar(_FIRST_AFTER_REGISTRATION, {"user_id": user_id}) > 1
        found = db.session.execute(_ON_NETWORK, {"user_id": user_id, "network": here, "since": since})
    sessions_before, seen = found.one()
    return sessions_before > 1 and not seen


# is_new's statements, built once (building one costs more CPU than running it): how many sessions the
# account has had, up to two, and whether one was on this device or network since :since.
_EARLIER = (select(func.count()).select_from(select(Session.id).where(Session.user_id == bindparam("user_id"))
                                             .limit(2).subquery()).scalar_subquery())
_FIRST_AFTER_REGISTRATION = select(_EARLIER)
_RECENT = (Session.user_id == bindparam("user_id"),
           Session.last_seen_at > bindparam("since", type_=Session.last_seen_at.type))
_ON_DEVICE = select(_EARLIER, select(Session.id).where(
    *_RECENT, Session.device_id == select(Device.id).where(Device.user_id == bindparam("user_id"),
                                                           Device.client_id == bindparam("client_id"))
    .scalar_subquery()).exists())
_ON_NETWORK = select(_EARLIER, select(Session.id).where(*_RECENT, Session.network == bindparam("network")).exists())


def signed_in(user: User, session: Session, now: datetime, *, new: bool = False, registration: bool = False) -> None:
    """Record the sign-in that opened `session` (written, not committed); `new` (see is_new) also records
    `new_device` and mails the owner a "new sign-in" notice with its "this wasn't me" link."""
    client = Client(session.ip_address, session.user_agent)
    device_id = session.device.id if session.device is not None else None  # device_id is set at the flush
    security_events.record(user.id, "signed_in", now, session_id=session.id, device_id=device_id,
                           client=client, detail={"methods": session.amr.split(), "registration": registration})
    if not new:
        return
    security_events.record(user.id, "new_device", now, session_id=session.id, device_id=device_id,
                           client=client)
    token = link_tokens.issue(user.id, link_tokens.NOT_ME, now, session=session)
    software = describe(session.user_agent)
    enqueue("new-sign-in", user.email, {
        "at": iso_z(now), "ip_address": session.ip_address, "browser": software.browser, "os": software.os,
        "device": session.device.name if session.device is not None else None,
        "not_me_url": link_tokens.link("/not-me", token),
    }, now=now, user_id=user.id, expires_at=now + timedelta(days=link_tokens.LINK_TOKEN_DAYS))


def not_me(token: str, now: datetime) -> None:
    """The owner says a reported sign-in was not them: its session is revoked, the password is locked
    until a reset (every sign-in with it is refused), and `not_me` is recorded. Once only."""
    row = link_tokens.spend(link_tokens.NOT_ME, token, now)
    if row is None:
        db.session.rollback()
        raise InvalidCode(N_("This link has expired or was already used."))
    db.session.execute(update(User).where(User.id == row.user_id, User.password_locked_at.is_(None))
                       .values(password_locked_at=now).execution_options(synchronize_session=False))
    security_events.record(row.user_id, "not_me", now, session_id=row.session_id)
    sessions.revoke(row.user_id, [row.session_id], now)
    db.session.commit()


def reported_session(token: str, now: datetime) -> Session | None:
    """The live session a "this wasn't me" token reports, to show before the owner confirms (nothing is spent)."""
    return db.session.scalar(
        select(Session).join(LinkToken, LinkToken.session_id == Session.id)
        .where(*link_tokens.live(link_tokens.NOT_ME, token, now)))
