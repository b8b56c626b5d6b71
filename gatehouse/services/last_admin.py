"""The last-admin rule: no change leaves Gatehouse without an active (enabled, not deleted) admin,
whichever path makes it (an admin's change or delete, an admin deleting their own account).

Without an admin no one could undo it through the API; `users create-admin` is the only way back.
"""
from __future__ import annotations

from sqlalchemy import and_, func, select

from gatehouse.errors import field_error
from gatehouse.extensions import db
from gatehouse.models import User

ACTIVE_ADMIN = and_(User.role == "admin", User.active)


def lock_active_admins() -> None:
    """Hold the active admins' rows until commit (PostgreSQL; in id order, so that two admins demoting
    or deleting each other queue instead of deadlocking). The one who waited then counts what the
    first left. On SQLite the first write of the transaction holds the database's write lock."""
    db.session.execute(select(User.id).where(ACTIVE_ADMIN).order_by(User.id).with_for_update())


def is_active_admin(user: User) -> bool:
    return user.role == "admin" and user.active


def keep_an_admin(user_id: str, field: str) -> None:
    """422 naming `field` (and the transaction rolled back) when no active admin but `user_id` is left."""
    others = db.session.scalar(select(func.count()).select_from(User).where(ACTIVE_ADMIN, User.id != user_id))
    if not others:
        db.session.rollback()
        raise field_error(field, "would leave no active admin; promote another admin first")
