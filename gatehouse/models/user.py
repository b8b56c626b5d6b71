"""The user aggregate: identity and credentials, settings (preferences) and subscription."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, and_
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from gatehouse.extensions import db
from gatehouse.models.types import UTCDateTime, new_id
from gatehouse.vocabulary import ROLES, SHOW_STATUSES, SUBSCRIPTION_STATUSES, TIERS



def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint(_in("show_status", SHOW_STATUSES), name="show_status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320))
    # NFKC, trimmed, lower-cased: the database enforces one account per address.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    username: Mapped[str | None] = mapped_column(String(32))
    # NFKC case-folded username; NULLs do not collide.
    username_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    avatar_url: Mapped[str | None] = mapped_column(String(2048))
    region: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    locale: Mapped[str] = mapped_column(String(35), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    role: Mapped[str] = mapped_column(String(16), default="user")
    show_status: Mapped[str] = mapped_column(String(16), default="visible")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str] = mapped_column(String(255))
    password_locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    settings: Mapped[UserSettings] = relationship(uselist=False, lazy="joined", passive_deletes=True)
    subscription: Mapped[Subscription] = relationship(uselist=False, lazy="joined", passive_deletes=True)

    @hybrid_property
    def active(self) -> bool:
        """May sign in and use its tokens; on the class, the same rule as an SQL condition."""
        return not self.disabled and self.deleted_at is None

    @active.inplace.expression
    @classmethod
    def _active_condition(cls):
        return and_(cls.disabled.is_(False), cls.deleted_at.is_(None))


class UserSettings(db.Model):
    __tablename__ = "user_settings"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # Only what the user changed; defaults (gatehouse.preferences) fill the rest on read.
    preferences: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Subscription(db.Model):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint(_in("tier", TIERS), name="tier"),
        CheckConstraint(_in("status", SUBSCRIPTION_STATUSES), name="status"),
    )

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tier: Mapped[str] = mapped_column(String(16), default="free")
    status: Mapped[str] = mapped_column(String(16), default="active")
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
