"""/admin/users: any account, for admins (the token's role and the account's current role)."""
from __future__ import annotations

from api import bp
from api.auth import caller
from api.routing import endpoint, reply
from api.schemas import AdminUserOut, AdminUserResult, AdminUsersResult
from gatehouse.clock import now
from gatehouse.models import User
from gatehouse.params import AdminUserPatch, AdminUsersQuery
from gatehouse.services import admin


def as_admin() -> None:
    admin.require_admin(caller())


def user_reply(user: User):
    return reply(AdminUserResult.model_construct(user=AdminUserOut.of(user)))


@endpoint(bp, "/admin/users", "GET", query=AdminUsersQuery, auth=True, responses={200: AdminUsersResult},
          errors=(403,), summary="List accounts, newest first (q, showStatus, includeDeleted, cursor, limit)")
def list_users(query: AdminUsersQuery):
    as_admin()
    page = admin.list_users(query)
    return reply(AdminUsersResult.model_construct(users=[AdminUserOut.of(u) for u in page.users],
                                                  next_cursor=page.next_cursor))


@endpoint(bp, "/admin/users/<user_id>", "GET", auth=True, responses={200: AdminUserResult}, errors=(403, 404),
          summary="One account, soft-deleted ones included")
def get_user(user_id: str):
    as_admin()
    return user_reply(admin.get_user(user_id))


@endpoint(bp, "/admin/users/<user_id>", "PATCH", body=AdminUserPatch, auth=True, responses={200: AdminUserResult},
          errors=(403, 404), summary="Change showStatus, role, disabled or subscription; disabling revokes "
                                     "every session; the last active admin cannot be demoted or disabled (422)")
def patch_user(user_id: str, params: AdminUserPatch):
    as_admin()
    return user_reply(admin.update_user(user_id, params, now=now()))


@endpoint(bp, "/admin/users/<user_id>", "DELETE", auth=True, responses={204: None}, errors=(403, 404),
          summary="Soft-delete an account and revoke its sessions (not the last active admin: 422)")
def delete_user(user_id: str):
    as_admin()
    admin.delete_user(user_id, now=now())
    return reply(None, 204)


@endpoint(bp, "/admin/users/<user_id>/restore", "POST", auth=True, responses={200: AdminUserResult},
          errors=(403, 404), summary="Undo a soft delete")
def restore_user(user_id: str):
    as_admin()
    return user_reply(admin.restore_user(user_id, now=now()))
