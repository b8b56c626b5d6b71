"""A user's own account: profile and preferences, password change, soft delete."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from gatehouse import regions
from gatehouse.clock import iso_z
from gatehouse.errors import PreconditionFailed, UsernameTaken
from gatehouse.extensions import db
from gatehouse.models import User, UserSettings
from gatehouse.outbox import enqueue
from gatehouse.params import PasswordChangeParams, ProfilePatch, username_key
from gatehouse.realtime.bus import publish
from gatehouse.services import security_events, sessions
from gatehouse.services.accounts import hash_new_password, verify_current_password
from gatehouse.services.last_admin import is_active_admin, keep_an_admin, lock_active_admins
from gatehouse.runtime import setting

# Top-level fields taken as given (camelCase name, column); region, currency and preferences have rules.
PLAIN_FIELDS = (("username", "username"), ("displayName", "display_name"), ("avatarUrl", "avatar_url"),
                ("locale", "locale"), ("timezone", "timezone"))


def merge_patch(target, patch):
    """RFC 7396: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_empty_sections(overrides: dict) -> dict:
    return {section: values for section, values in overrides.items() if values}


def _bump_version(user_id: str, expected_version: int | None, now: datetime) -> int:
    """version = version + 1 in the database, so concurrent writers queue on the row and never lose
    an update; with `expected_version` (If-Match), only while the row still has it."""
    statement = update(User).where(User.id == user_id)
    if expected_version is not None:
        statement = statement.where(User.version == expected_version)
    version = db.session.execute(
        statement.values(version=User.version + 1, updated_at=now).returning(User.version)
    ).scalar_one_or_none()
    if version is None:
        db.session.rollback()
        raise PreconditionFailed("The profile has changed since it was read; read it again (new ETag).")
    return version


def _current(user_id: str) -> User:
    """The user row as it is now, inside this transaction (the version bump holds its lock)."""
    return db.session.execute(
        select(User).where(User.id == user_id).execution_options(populate_existing=True)
    ).unique().scalar_one()


def _apply_region(user: User, patch: ProfilePatch) -> list[str]:
    if not (patch.given("region") or patch.given("currency")):
        return []
    region = patch.region if patch.given("region") else user.region
    if patch.given("currency"):
        currency = patch.currency
    elif region != user.region:
        currency = None  # a new region alone takes its default currency
    else:
        currency = user.currency
    region, currency = regions.resolve(region, currency, setting("DEFAULT_REGION"))
    changed = []
    if region != user.region:
        user.region = region
        changed.append("region")
    if currency != user.currency:
        user.currency = currency
        changed.append("currency")
    return changed


def _apply_preferences(user: User, patch: ProfilePatch, now: datetime) -> list[str]:
    if not patch.given("preferences"):
        return []
    settings = user.settings
    if settings is None:
        settings = UserSettings(user_id=user.id, preferences={}, updated_at=now)
        db.session.add(settings)
    before = settings.preferences or {}
    after = {} if patch.preferences is None else _without_empty_sections(
        merge_patch(before, patch.preferences.as_merge_patch()))
    if after == before:
        return []
    settings.preferences = after  # a new dict, so the JSON column is seen as changed
    settings.updated_at = now
    return ["preferences"]


def _apply(user: User, patch: ProfilePatch, now: datetime) -> list[str]:
    """Set the patched fields on the user; the camelCase names of those that really changed."""
    changed = []
    for name, attribute in PLAIN_FIELDS:
        if patch.given(attribute) and getattr(patch, attribute) != getattr(user, attribute):
            setattr(user, attribute, getattr(patch, attribute))
            changed.append(name)
    if "username" in changed:
        user.username_key = username_key(user.username) if user.username else None
    changed += _apply_region(user, patch)
    changed += _apply_preferences(user, patch, now)
    return changed


def update_profile(user_id: str, patch: ProfilePatch, *, expected_version: int | None, now: datetime) -> User:
    """PATCH /users/me. A change bumps `version` by exactly one and publishes `entity:updated`;
    a patch that changes nothing writes nothing. 412 when `expected_version` is stale."""
    version = _bump_version(user_id, expected_version, now)
    user = _current(user_id)
    try:
        changed = _apply(user, patch, now)
    except Exception:
        db.session.rollback()
        raise
    if not changed:
        db.session.rollback()
        return user
    try:
        # Loaded rows are not expired by the commit (gatehouse.extensions): the reply shows the user
        # exactly as this change left it, never a concurrent writer's later state.
        db.session.commit()
    except IntegrityError:
        # The only unique column a profile change touches is the case-folded username.
        db.session.rollback()
        raise UsernameTaken() from None
    publish(user_id, "entity:updated", {"entity": "user", "id": user_id, "version": version, "fields": changed})
    return user


def update_password(caller: sessions.Caller, params: PasswordChangeParams, *, now: datetime) -> list[str]:
    """Change the password; every other session is revoked and a notice is mailed. The revoked ids."""
    user = caller.user
    verify_current_password(user, params.current_password, now)
    user.password_hash = hash_new_password(params.new_password, email=user.email, username=user.username,
                                           field="newPassword")
    security_events.record(user.id, "password_changed", now, session_id=caller.session_id,
                           device_id=caller.snapshot.session.device_id)
    # The caller's own session stays signed in, so the notice does not say "signed out everywhere".
    enqueue("password-changed", user.email,
            {"changed_at": iso_z(now), "signed_out_everywhere": False},
            now=now, user_id=user.id)
    revoked = sessions.revoke_all(user.id, now, except_id=caller.session_id)
    db.session.commit()  # the new hash, the notice and the revocations: one transaction
    return revoked


def delete_account(caller: sessions.Caller, password: str, *, now: datetime) -> None:
    """Soft delete: sign-in and every token are refused from now on; the rows stay until a purge."""
    user = caller.user
    verify_current_password(user, password, now)
    admin = is_active_admin(user)
    if admin:
        lock_active_admins()
    db.session.execute(update(User).where(User.id == user.id, User.deleted_at.is_(None)).values(deleted_at=now))
    if admin:  # the last admin stays: another must be promoted first
        keep_an_admin(user.id, "role")
    security_events.record(user.id, "account_deleted", now, session_id=caller.session_id,
                           device_id=caller.snapshot.session.device_id)
    sessions.revoke_all(user.id, now)
    db.session.commit()
