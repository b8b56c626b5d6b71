"""The devices a user has signed in from: listing them, and forgetting one with its sessions."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from gatehouse.extensions import db
from gatehouse.models import Device, Session
from gatehouse.params import row_id
from gatehouse.services import security_events, sessions


def of_user(user_id: str) -> list[Device]:
    """The user's devices, most recently seen first."""
    return list(db.session.scalars(
        select(Device).where(Device.user_id == user_id).order_by(Device.last_seen_at.desc(), Device.created_at.desc())
    ))


def forget(user_id: str, device_id: str, now: datetime) -> bool:
    """Remove one of the user's devices and revoke every session on it; False when the user has no such device."""
    device_id = row_id(device_id)
    if device_id is None:
        return False
    # Locking the row first makes a sign-in on this device either finish before (its session is
    # revoked here) or wait and register the device afresh.
    locked = db.session.scalar(
        select(Device.id).where(Device.id == device_id, Device.user_id == user_id).with_for_update())
    if locked is None:
        db.session.rollback()
        return False
    on_device = list(db.session.scalars(
        select(Session.id).where(Session.user_id == user_id, Session.device_id == device_id,
                                 Session.revoked_at.is_(None))))
    for session_id in on_device:
        security_events.record(user_id, "session_revoked", now, session_id=session_id,
                               detail={"reason": "device_forgotten"})
    db.session.execute(delete(Device).where(Device.id == device_id, Device.user_id == user_id))
    sessions.revoke(user_id, on_device, now)
    db.session.commit()
    return True
