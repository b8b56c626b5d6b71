"""WebSocket tickets: single-use, short-lived credentials that open /ws for one session (browsers)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from gatehouse.extensions import db
from gatehouse.models.types import UTCDateTime, new_id


class WsTicket(db.Model):
    __tablename__ = "ws_tickets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    ticket_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256, hex; the ticket is never stored
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
