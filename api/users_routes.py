"""/users/me/*: the caller's own profile, preferences, password, account, sessions and devices."""
from __future__ import annotations

from flask import request

from api import bp
from api.auth import caller
from api.routing import endpoint, reply
from api.schemas import DeviceOut, DevicesResult, SessionOut, SessionsResult, UserOut, UserResult
from gatehouse.clock import now
from gatehouse.errors import NotFound, PreconditionFailed
from gatehouse.models import User
from gatehouse.params import DeleteAccountParams, PasswordChangeParams, ProfilePatch, precondition_version
from gatehouse.services import devices, profile, sessions


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version() -> int | None:
    """The version named by If-Match (strong comparison, RFC 9110 §13.1.1); None without one or with `*`."""
    if "If-Match" not in request.headers:
        return None
    header = request.if_match
    if header.star_tag:
        return None
    tags = header.as_set()  # strong tags only: a weak tag never matches
    if len(tags) == 1:
        (tag,) = tags
        return precondition_version(tag)
    raise PreconditionFailed("If-Match must carry the one strong ETag of GET /users/me.")


def user_reply(user: User):
    return reply(UserResult.model_construct(user=UserOut.of(user)), headers={"ETag": etag(user.version)})


@endpoint(bp, "/users/me", "GET", auth=True, responses={200: UserResult},
          summary="The caller's profile, with its version as a strong ETag")
def get_me():
    who = caller()
    sessions.touch(who.snapshot.session, now())
    return user_reply(who.snapshot.user)


@endpoint(bp, "/users/me", "PATCH", body=ProfilePatch, auth=True, responses={200: UserResult}, errors=(409, 412),
          headers=("If-Match",),
          summary="Change the caller's profile and preferences (preferences by JSON Merge Patch)")
def patch_me(params: ProfilePatch):
    version = expected_version()
    return user_reply(profile.update_profile(caller().user_id, params, expected_version=version, now=now()))


@endpoint(bp, "/users/me/password", "POST", body=PasswordChangeParams, auth=True, fresh=True,
          responses={200: UserResult},
          summary="Change the password; every other session is revoked")
def change_password(params: PasswordChangeParams):
    who = caller()
    profile.update_password(who, params, now=now())
    return reply(UserResult.model_construct(user=UserOut.of(who.user)))


@endpoint(bp, "/users/me", "DELETE", body=DeleteAccountParams, auth=True, fresh=True, responses={204: None},
          summary="Delete the caller's account (soft delete); every session is revoked")
def delete_me(params: DeleteAccountParams):
    profile.delete_account(caller(), params.password, now=now())
    return reply(None, 204)


@endpoint(bp, "/users/me/sessions", "GET", auth=True, responses={200: SessionsResult},
          summary="The caller's live sessions")
def list_sessions():
    who = caller()
    sessions.touch(who.snapshot.session, now())
    live = sessions.live_of_user(who.user_id, now())
    return reply(SessionsResult.model_construct(sessions=[SessionOut.of(s, who.session_id) for s in live]))


@endpoint(bp, "/users/me/sessions/<session_id>", "DELETE", auth=True, responses={204: None}, errors=(404,),
          summary="Revoke one of the caller's sessions")
def revoke_session(session_id: str):
    if not sessions.revoke_one(caller().user_id, session_id, now()):
        raise NotFound("No such session.")
    return reply(None, 204)


@endpoint(bp, "/users/me/devices", "GET", auth=True, responses={200: DevicesResult},
          summary="The devices the caller has signed in from")
def list_devices():
    return reply(DevicesResult.model_construct(devices=[DeviceOut.of(d) for d in devices.of_user(caller().user_id)]))


@endpoint(bp, "/users/me/devices/<device_id>", "DELETE", auth=True, responses={204: None}, errors=(404,),
          summary="Forget one of the caller's devices and revoke its sessions")
def forget_device(device_id: str):
    if not devices.forget(caller().user_id, device_id, now()):
        raise NotFound("No such device.")
    return reply(None, 204)
