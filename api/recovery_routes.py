"""/auth/forgot-password, /auth/reset-password, /auth/verify-email, /auth/resend-verification."""
from __future__ import annotations

from typing import Literal

from api import bp
from api.auth import caller
from api.routing import endpoint, reply
from api.schemas import Out, UserOut, UserResult
from gatehouse.clock import now
from gatehouse.params import ForgotPasswordParams, ResetPasswordParams, VerifyEmailParams
from gatehouse.services import recovery


class StatusOut(Out):
    status: Literal["accepted", "ok"]
    detail: str


# One body for every address: it says nothing about whether an account has it.
FORGOT_ACCEPTED = StatusOut(status="accepted",
                            detail="If an account uses this address, a reset code is on its way.")
RESEND_ACCEPTED = StatusOut(status="accepted", detail="A new verification code is on its way.")
PASSWORD_RESET = StatusOut(status="ok", detail="The password was changed; sign in with the new password.")


@endpoint(bp, "/auth/forgot-password", "POST", body=ForgotPasswordParams, responses={202: StatusOut},
          summary="Mail a password reset code (the same answer whether or not the address has an account)")
def forgot_password(params: ForgotPasswordParams):
    recovery.forgot_password(params, now())
    return reply(FORGOT_ACCEPTED, 202)


@endpoint(bp, "/auth/reset-password", "POST", body=ResetPasswordParams, responses={200: StatusOut},
          summary="Set a new password with a mailed code; every session is revoked", errors=(400,))
def reset_password(params: ResetPasswordParams):
    recovery.reset_password(params, now())
    return reply(PASSWORD_RESET)


@endpoint(bp, "/auth/verify-email", "POST", body=VerifyEmailParams, auth=True, responses={200: UserResult},
          summary="Confirm the caller's email address with the mailed code", errors=(400,))
def verify_email(params: VerifyEmailParams):
    user = recovery.verify_email(caller().user, params.code, now())
    return reply(UserResult.model_construct(user=UserOut.of(user)))


@endpoint(bp, "/auth/resend-verification", "POST", auth=True, responses={202: StatusOut},
          summary="Mail a fresh verification code (the previous one stops working)")
def resend_verification():
    recovery.resend_verification(caller().user, now())
    return reply(RESEND_ACCEPTED, 202)
