"""The security timeline of an account (CONTRACT §11): one row per security-relevant change.

`record` adds the row to the transaction of the change it describes, so a change that fails
leaves no row and one that commits always has its row; the row is pushed to the user's own
WebSocket connections as `security:event` once that transaction commits. Each kind is recorded in
the one use case that makes the change (gatehouse.services), never by an adapter.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import has_request_context, request
from sqlalchemy import and_, delete, or_, select

from gatehouse.clock import iso_z
from gatehouse.extensions import db
from gatehouse.models import Device, SecurityEvent
from gatehouse.models.rows import insert_row
from gatehouse.models.types import new_id
from gatehouse.realtime.bus import publish_after_commit
from gatehouse.services import cursors
from gatehouse.runtime import setting

# The catalogue: every kind a row can have.
KINDS = (
    "signed_in", "sign_in_failed", "signed_out", "session_revoked", "refresh_token_reused",
    "password_changed", "password_reset", "email_change_requested", "email_changed", "email_reverted",
    "mfa_enabled", "mfa_disabled", "recovery_codes_regenerated", "passkey_added", "passkey_removed",
    "recovery_code_used", "new_device", "not_me", "locked", "account_deleted", "account_restored",
    # admin actions
    "role_changed", "disabled", "enabled", "mfa_reset",
)
EVENT = "security:event"
LISTING = "security-events"


@dataclass(frozen=True)
class Client:
    """Where a change came from: the client address and user agent of its request, as stored."""

    ip_address: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, ip_address: str | None, user_agent: str | None) -> Client:
        """A client as stored: the address and user agent cut to their columns."""
        return cls(stored_address(ip_address), stored_user_agent(user_agent))


# An admin's action: the timeline shows that an admin did it, not the admin's address or session.
BY_ADMIN = Client()


def stored_address(ip_address: str | None) -> str | None:
    return (ip_address or "")[:45] or None


def network(ip_address: str | None) -> str | None:
    """The /24 of an IPv4 address (an IPv4-mapped IPv6 address counts as IPv4), the /64 of an IPv6 one."""
    try:
        ip = ipaddress.ip_address(ip_address or "")
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


def stored_user_agent(user_agent: str | None) -> str | None:
    """Kept for display only: cut to its column, without the NUL PostgreSQL refuses."""
    return (user_agent or "").replace("\x00", "")[:512] or None


def of_request() -> Client:
    """The client of the request being served (none outside a request: the CLI, the worker)."""
    if not has_request_context():
        return Client()
    return Client.of(request.remote_addr, request.user_agent.string)


def as_json(event: SecurityEvent, device: Device | None = None) -> dict:
    """The event object of the API and of `security:event` (one shape for both)."""
    device = device or event.device
    return {
        "id": event.id, "kind": event.kind, "at": iso_z(event.at), "ipAddress": event.ip_address,
        "userAgent": event.user_agent, "sessionId": event.session_id,
        "device": None if device is None else {
            "id": device.id, "name": device.name, "platform": device.platform, "appVersion": device.app_version,
            "lastSeenAt": iso_z(device.last_seen_at)},
        "detail": event.detail or {},
    }


def record(user_id: str, kind: str, now: datetime, *, session_id: str | None = None, device_id: str | None = None,
           client: Client | None = None, detail: dict | None = None) -> SecurityEvent:
    """Write the row of `kind` in the transaction in progress (not committed); `client` defaults to
    the request's. Pushed as `security:event` after the commit."""
    if kind not in KINDS:
        raise ValueError(f"unknown security event kind {kind!r}")
    client = of_request() if client is None else client
    device = db.session.get(Device, device_id) if device_id is not None else None
    event = insert_row(SecurityEvent, dict(id=new_id(), user_id=user_id, kind=kind, at=now, ip_address=client.ip_address,
                                           user_agent=client.user_agent, session_id=session_id, device_id=device_id,
                                           detail=detail or {}), device=device)
    publish_after_commit(user_id, EVENT, as_json(event, device))
    return event


@dataclass
class Page:
    events: list[SecurityEvent]
    next_cursor: str | None


def page(user_id: str, cursor: str | None, limit: int) -> Page:
    """The user's events, newest first, keyset-paginated on (at, id): a page never repeats or skips one."""
    statement = select(SecurityEvent).where(SecurityEvent.user_id == user_id)
    if cursor is not None:
        at, event_id = cursors.position(LISTING, cursor)
        statement = statement.where(or_(SecurityEvent.at < at, and_(SecurityEvent.at == at, SecurityEvent.id < event_id)))
    rows = list(db.session.scalars(statement.order_by(SecurityEvent.at.desc(), SecurityEvent.id.desc())
                                   .limit(limit + 1)).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, cursors.after(LISTING, rows[-1].at, rows[-1].id) if more else None)


def purge(now: datetime) -> int:
    """The worker's housekeeping: rows older than SECURITY_EVENTS_DAYS go; commits."""
    result = db.session.execute(delete(SecurityEvent).where(
        SecurityEvent.at < now - timedelta(days=setting("SECURITY_EVENTS_DAYS"))))
    db.session.commit()
    return result.rowcount
