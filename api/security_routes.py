"""Changing the email address (§10) and the security timeline (§11): /users/me/email*, /auth/email/revert,
/users/me/security-events, /admin/users/{id}/security-events, /auth/not-me."""
from __future__ import annotations

from api import bp
from api.admin_routes import as_admin
from api.auth import caller
from api.recovery_routes import StatusOut
from api.routing import endpoint, reply
from api.schemas import SecurityEventOut, SecurityEventsResult, UserOut, UserResult
from gatehouse.clock import now
from gatehouse.params import EmailChangeParams, LinkTokenParams, SecurityEventsQuery, VerifyEmailParams
from gatehouse.services import admin, alerts, email_change, security_events

CODE_SENT = StatusOut(status="accepted", detail="A code is on its way to the new address; the address changes "
                                                "when it comes back (POST /users/me/email/confirm).")
REVERTED = StatusOut(status="ok", detail="The previous address is back and every session was signed out. "
                                         "Set a new password with the reset code mailed to it.")
NOT_ME = StatusOut(status="ok", detail="That sign-in was signed out and the password locked. Set a new password "
                                       "with “Forgot password” to sign in again.")


@endpoint(bp, "/users/me/email", "POST", body=EmailChangeParams, auth=True, fresh=True, responses={202: StatusOut},
          errors=(409,), summary="Change the email address: a code is mailed to the new address")
def request_email_change(params: EmailChangeParams):
    email_change.request_change(caller(), params, now())
    return reply(CODE_SENT, 202)


@endpoint(bp, "/users/me/email/confirm", "POST", body=VerifyEmailParams, auth=True, responses={200: UserResult},
          errors=(400, 409), summary="Confirm the new email address with the code mailed to it")
def confirm_email_change(params: VerifyEmailParams):
    user = email_change.confirm(caller(), params.code, now())
    return reply(UserResult.model_construct(user=UserOut.of(user)))


@endpoint(bp, "/auth/email/revert", "POST", body=LinkTokenParams, responses={200: StatusOut}, errors=(400, 409),
          summary="Undo an email change with the link mailed to the old address; every session is revoked")
def revert_email_change(params: LinkTokenParams):
    email_change.revert(params.token, now())
    return reply(REVERTED)


@endpoint(bp, "/auth/not-me", "POST", body=LinkTokenParams, responses={200: StatusOut}, errors=(400,),
          summary="“This wasn't me” from a new-sign-in mail: that session is revoked, the password locked")
def not_me(params: LinkTokenParams):
    alerts.not_me(params.token, now())
    return reply(NOT_ME)


def events_reply(user_id: str, query: SecurityEventsQuery):
    page = security_events.page(user_id, query.cursor, query.limit)
    return reply(SecurityEventsResult.model_construct(events=[SecurityEventOut.of(e) for e in page.events],
                                                      next_cursor=page.next_cursor))


@endpoint(bp, "/users/me/security-events", "GET", query=SecurityEventsQuery, auth=True,
          responses={200: SecurityEventsResult}, summary="The caller's security timeline, newest first")
def my_security_events(query: SecurityEventsQuery):
    return events_reply(caller().user_id, query)


@endpoint(bp, "/admin/users/<user_id>/security-events", "GET", query=SecurityEventsQuery, auth=True,
          responses={200: SecurityEventsResult}, errors=(403, 404), summary="Any account's security timeline")
def user_security_events(user_id: str, query: SecurityEventsQuery):
    as_admin()
    return events_reply(admin.get_user(user_id).id, query)
