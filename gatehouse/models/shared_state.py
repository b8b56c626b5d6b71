"""State the processes of one instance share through the database when no Redis is configured:
rate-limit windows and the presence roster of held WebSocket connections."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from gatehouse.extensions import db
from gatehouse.models.types import UTCDateTime


class RateLimitWindow(db.Model):
    """One moving window of a rate-limit key (a bucket and a client address): its hits, newest first,
    as epoch seconds. The row is also the lock that serialises every process's check of the key."""

    __tablename__ = "rate_limit_windows"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    hits: Mapped[list] = mapped_column(JSON, default=list)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # epoch seconds: the last hit's lapse


class PresenceConnection(db.Model):
    """A WebSocket connection some process holds, renewed at every heartbeat; a crashed process's rows
    lapse by themselves."""

    __tablename__ = "presence_connections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    lapses_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
