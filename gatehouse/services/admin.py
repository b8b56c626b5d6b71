"""Admin use cases on any account: list, read, change, soft delete, restore, and the purge of deleted accounts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select

from gatehouse.errors import Forbidden, NotFound
from gatehouse.extensions import db
from gatehouse.models import Subscription, User
from gatehouse.params import AdminUserPatch, AdminUsersQuery, SubscriptionPatch, email_key, row_id, username_key
from gatehouse.realtime.bus import publish_after_commit
from gatehouse.services import cursors, security_events, sessions
from gatehouse.services.last_admin import is_active_admin, keep_an_admin, lock_active_admins
from gatehouse.services.profile import _bump_version as bump_version
from gatehouse.services.profile import _current as current

PLAIN_FIELDS = (("showStatus", "show_status"), ("role", "role"), ("disabled", "disabled"))
SUBSCRIPTION_FIELDS = ("tier", "status", "current_period_end")
LISTING = "admin-users"


def require_admin(caller: sessions.Caller) -> None:
    """An admin is one whose token says so and whose account still does: a demotion takes effect
    at the next request, without waiting for the token to expire."""
    if caller.claims.get("role") != "admin" or caller.snapshot.user.role != "admin":
        raise Forbidden("This needs an admin account.")


# ---- listing -----------------------------------------------------------------------------------

@dataclass
class Page:
    users: list[User]
    next_cursor: str | None


def _matching(q: str):
    """Case-insensitive substring of the email, the username or the display name."""
    return or_(User.email_key.contains(email_key(q), autoescape=True),
               User.username_key.contains(username_key(q), autoescape=True),
               func.lower(User.display_name).contains(q.lower(), autoescape=True))


def list_users(query: AdminUsersQuery) -> Page:
    """Newest first, keyset-paginated on (createdAt, id): a page never repeats or skips a user,
    whatever is inserted meanwhile (newer users appear on a fresh first page)."""
    statement = select(User).where(User.show_status == query.show_status)
    if not query.include_deleted:
        statement = statement.where(User.deleted_at.is_(None))
    if query.q is not None:
        statement = statement.where(_matching(query.q))
    if query.cursor is not None:
        created_at, user_id = cursors.position(LISTING, query.cursor)
        statement = statement.where(or_(User.created_at < created_at,
                                        and_(User.created_at == created_at, User.id < user_id)))
    statement = statement.order_by(User.created_at.desc(), User.id.desc()).limit(query.limit + 1)
    users = list(db.session.scalars(statement).unique())
    more = len(users) > query.limit
    users = users[:query.limit]
    return Page(users, cursors.after(LISTING, users[-1].created_at, users[-1].id) if more else None)


def get_user(user_id: str) -> User:
    """Any account, soft-deleted ones included; 404 for an unknown or malformed id."""
    found = row_id(user_id)
    user = db.session.get(User, found) if found is not None else None
    if user is None:
        raise NotFound("No such user.")
    return user


# ---- changes -----------------------------------------------------------------------------------

def _apply_subscription(user: User, patch: SubscriptionPatch, now: datetime) -> bool:
    subscription = user.subscription
    if subscription is None:
        subscription = Subscription(user_id=user.id, tier="free", status="active", updated_at=now)
        db.session.add(subscription)
        user.subscription = subscription
    changed = False
    for name in SUBSCRIPTION_FIELDS:
        if patch.given(name) and getattr(patch, name) != getattr(subscription, name):
            setattr(subscription, name, getattr(patch, name))
            changed = True
    if changed:
        subscription.updated_at = now
    return changed


def _apply(user: User, patch: AdminUserPatch, now: datetime) -> list[str]:
    changed = [name for name, attribute in PLAIN_FIELDS
               if patch.given(attribute) and getattr(patch, attribute) != getattr(user, attribute)]
    for name, attribute in PLAIN_FIELDS:
        if name in changed:
            setattr(user, attribute, getattr(patch, attribute))
    if patch.given("subscription") and _apply_subscription(user, patch.subscription, now):
        changed.append("subscription")
    return changed


def update_user(user_id: str, patch: AdminUserPatch, *, now: datetime) -> User:
    """PATCH /admin/users/{id}: version + 1 and `entity:updated` when something changed; disabling
    revokes every session in the same transaction, so the user's tokens die at their next request."""
    user_id = get_user(user_id).id
    if patch.role == "user" or patch.disabled:
        lock_active_admins()
    version = bump_version(user_id, None, now)
    user = current(user_id)
    was_admin = is_active_admin(user)
    changed = _apply(user, patch, now)
    if not changed:
        db.session.rollback()
        return user
    if was_admin and not is_active_admin(user):
        keep_an_admin(user_id, "role" if "role" in changed else "disabled")
    if "role" in changed:
        security_events.record(user_id, "role_changed", now, client=security_events.BY_ADMIN,
                               detail={"role": user.role})
    if "disabled" in changed:
        security_events.record(user_id, "disabled" if user.disabled else "enabled", now,
                               client=security_events.BY_ADMIN)
    if "disabled" in changed and user.disabled:
        sessions.revoke_all(user_id, now)  # the user's tokens die with the change
    publish_after_commit(user_id, "entity:updated", {"entity": "user", "id": user_id, "version": version,
                                                      "fields": changed})
    db.session.commit()
    return user


def promote(user_id: str, *, now: datetime) -> None:
    """Make the account an admin (`users create-admin` on an existing address): the same version bump,
    `role_changed` and `entity:updated` as an admin's PATCH; an admin already stays as it is."""
    version = bump_version(user_id, None, now)
    user = current(user_id)
    if user.role == "admin":
        db.session.rollback()
        return
    user.role = "admin"
    security_events.record(user_id, "role_changed", now, client=security_events.BY_ADMIN, detail={"role": "admin"})
    publish_after_commit(user_id, "entity:updated", {"entity": "user", "id": user_id, "version": version,
                                                      "fields": ["role"]})
    db.session.commit()


def delete_user(user_id: str, *, now: datetime) -> None:
    """Soft delete (a second time changes nothing): sign-in and every token are refused until a restore."""
    user_id = get_user(user_id).id
    lock_active_admins()
    bump_version(user_id, None, now)
    user = current(user_id)
    if user.deleted_at is not None:
        db.session.rollback()
        return
    if is_active_admin(user):
        keep_an_admin(user_id, "id")
    user.deleted_at = now
    security_events.record(user_id, "account_deleted", now, client=security_events.BY_ADMIN, detail={"byAdmin": True})
    sessions.revoke_all(user_id, now)
    db.session.commit()


def restore_user(user_id: str, *, now: datetime) -> User:
    """Undo a soft delete; the account signs in again with its old password (its sessions stay revoked)."""
    user_id = get_user(user_id).id
    bump_version(user_id, None, now)
    user = current(user_id)
    if user.deleted_at is None:
        db.session.rollback()
        return user
    user.deleted_at = None
    security_events.record(user_id, "account_restored", now, client=security_events.BY_ADMIN)
    db.session.commit()
    return user


def purge_deleted_users(older_than: timedelta, *, now: datetime) -> int:
    """Hard-delete accounts soft-deleted more than `older_than` ago; the database's foreign keys
    remove every row keyed by them (the outbox keeps its rows, unlinked). How many were removed."""
    result = db.session.execute(delete(User).where(User.deleted_at.is_not(None), User.deleted_at < now - older_than))
    db.session.commit()
    return result.rowcount
