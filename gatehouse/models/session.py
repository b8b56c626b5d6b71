"""The session aggregate: devices, sessions and the refresh-token rotation family of each session."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, and_
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gatehouse.extensions import db
from gatehouse.models.types import UTCDateTime, new_id


class Device(db.Model):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The id the client sent; scoped to the user, so another user's device never links here.
    client_id: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100))
    platform: Mapped[str] = mapped_column(String(32))
    app_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Session(db.Model):
    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id_network", "user_id", "network", "last_seen_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(8), default="api")  # api | portal
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Absolute: refresh rotation never moves it.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    # The address's /24 (IPv4) or /64 (IPv6): where a sign-in is "new" from (services.alerts).
    network: Mapped[str | None] = mapped_column(String(49))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # How and when the user last proved who they are in this session (RFC 8176 amr, space-separated;
    # NIST AAL); access tokens carry them, refresh keeps them, /auth/reauthenticate renews them.
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    amr: Mapped[str] = mapped_column(String(64), default="pwd", server_default="pwd")
    aal: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    device: Mapped[Device | None] = relationship(lazy="joined")

    @classmethod
    def live_at(cls, now):
        """The SQL condition of a live session at `now` (a bound parameter or a value): neither revoked
        nor past its absolute expiry. Every check of a session's liveness runs in SQL."""
        return and_(cls.revoked_at.is_(None), cls.expires_at > now)


class RefreshToken(db.Model):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256, hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    spent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Lets one flush write a new session and its first token in the right order.
    session: Mapped[Session] = relationship(lazy="raise")
