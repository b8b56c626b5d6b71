"""WebSocket tickets: issue one for a session, redeem it once (POST /auth/ws-ticket, GET /ws?ticket=)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update

from gatehouse.errors import TokenInvalid
from gatehouse.extensions import db
from gatehouse.models import WsTicket
from gatehouse.security.tokens import new_ticket, sha256_hex
from gatehouse.runtime import setting
from gatehouse.services.sessions import Caller, live_caller


def issue(caller: Caller, now: datetime) -> tuple[str, datetime]:
    """A new ticket for the caller's session, stored only as its hash; expired tickets are swept."""
    ticket = new_ticket()
    expires_at = now + timedelta(seconds=setting("WS_TICKET_TTL"))
    db.session.execute(delete(WsTicket).where(WsTicket.expires_at <= now))
    db.session.add(WsTicket(ticket_hash=sha256_hex(ticket), session_id=caller.session_id, expires_at=expires_at))
    db.session.commit()
    return ticket, expires_at


def redeem(ticket: str, now: datetime, *, session_id: str | None = None) -> Caller:
    """Spend a ticket in one atomic statement (two concurrent uses: one wins), then check its session.

    With `session_id` (the session of another credential the request carries), only a ticket of
    that very session is spent: a ticket is bound to the session it was issued for.
    """
    bound = [WsTicket.session_id == session_id] if session_id is not None else []
    session_id = db.session.execute(
        update(WsTicket)
        .where(WsTicket.ticket_hash == sha256_hex(ticket), WsTicket.used_at.is_(None), WsTicket.expires_at > now,
               *bound)
        .values(used_at=now)
        .returning(WsTicket.session_id)
    ).scalar_one_or_none()
    db.session.commit()
    if session_id is None:
        raise TokenInvalid("The ticket is invalid, used or expired.")
    return live_caller(session_id, now)
