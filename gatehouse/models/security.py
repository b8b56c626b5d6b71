"""The security timeline (`security_events`) and the single-use tokens that links in mails carry (`link_tokens`)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gatehouse.extensions import db
from gatehouse.models.session import Device, Session
from gatehouse.models.types import UTCDateTime, new_id


class SecurityEvent(db.Model):
    """One security-relevant change of an account, written in the transaction of the change itself."""

    __tablename__ = "security_events"
    # The timeline reads newest first by (at, id); the worker's retention deletes by `at`.
    __table_args__ = (Index("ix_security_events_user_at", "user_id", "at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # The session the event is about (the new one at a sign-in, the revoked one at a revocation,
    # the acting one otherwise); kept as a plain id so the row outlives a purge of sessions.
    session_id: Mapped[str | None] = mapped_column(String(36))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)

    device: Mapped[Device | None] = relationship(lazy="joined")


class LinkToken(db.Model):
    """A token mailed inside a link ("this wasn't me", revert an email change): stored as its
    SHA-256, single-use (spent by one UPDATE), valid for days rather than minutes."""

    __tablename__ = "link_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # not_me | email_revert
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # not_me: the session of the sign-in the mail reported.
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    # email_revert: the address to restore, and its normalised key (reserved while the token lives).
    email: Mapped[str | None] = mapped_column(String(320))
    email_key: Mapped[str | None] = mapped_column(String(320), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Lets one flush write a new session and the token that names it in the right order.
    session: Mapped[Session | None] = relationship(lazy="raise")
