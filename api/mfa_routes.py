"""Second factors, passkeys and step-up: /users/me/mfa*, /users/me/passkeys*, /auth/mfa/*, /auth/passkey/*,
/auth/reauthenticate and the admin reset."""
from __future__ import annotations

from api import bp
from api.auth import caller
from api.auth_routes import client, signed_in
from api.routing import endpoint, reply
from api.schemas import (CreationOptionsResult, MfaResult, PasskeyOut, PasskeyResult, PasswordlessOptionsResult,
                         RecoveryCodesResult, RequestOptionsResult, TokensOut, TokensResult, TotpEnrolment, TotpOut,
                         AuthResult)
from gatehouse.clock import now
from gatehouse.params import (MfaTokenParams, MfaVerifyParams, PasskeyLoginParams, PasskeyParams,
                              ReauthenticateParams, TotpConfirmParams)
from gatehouse.services import admin, factors, passkeys, stepup


@endpoint(bp, "/users/me/mfa", "GET", auth=True, responses={200: MfaResult},
          summary="The caller's second factors: TOTP, passkeys and how many recovery codes are left")
def get_mfa():
    found = factors.summary(caller().user_id)
    return reply(MfaResult.model_construct(
        totp=TotpOut.model_construct(created_at=found.totp.confirmed_at) if found.totp else None,
        passkeys=[PasskeyOut.of(p) for p in found.passkeys], recovery_codes_left=found.recovery_codes_left))


@endpoint(bp, "/users/me/mfa/totp", "POST", auth=True, fresh=True, responses={201: TotpEnrolment}, errors=(409,),
          summary="Start TOTP: a pending secret, its otpauth:// URI and an inline SVG QR code; 10 minutes to confirm")
def start_totp():
    enrolment = factors.start_totp(caller(), now())
    return reply(TotpEnrolment.model_construct(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri,
                                               qr_svg=enrolment.qr_svg, expires_at=enrolment.expires_at), 201)


@endpoint(bp, "/users/me/mfa/totp/confirm", "POST", body=TotpConfirmParams, auth=True, fresh=True,
          responses={200: RecoveryCodesResult}, errors=(400,),
          summary="Turn TOTP on with a first code; the ten recovery codes (shown once) when it is the first factor")
def confirm_totp(params: TotpConfirmParams):
    codes = factors.confirm_totp(caller(), params.code, now())
    return reply(RecoveryCodesResult.model_construct(recovery_codes=codes))


@endpoint(bp, "/users/me/mfa/totp", "DELETE", auth=True, fresh=True, responses={204: None}, errors=(404,),
          summary="Turn TOTP off")
def remove_totp():
    factors.remove_totp(caller(), now())
    return reply(None, 204)


@endpoint(bp, "/users/me/mfa/recovery-codes", "POST", auth=True, fresh=True, responses={200: RecoveryCodesResult},
          errors=(404,), summary="Ten new recovery codes (shown once); the old ones stop working")
def regenerate_recovery_codes():
    return reply(RecoveryCodesResult.model_construct(
        recovery_codes=factors.regenerate_recovery_codes(caller(), now())))


@endpoint(bp, "/users/me/passkeys/options", "POST", auth=True, fresh=True, responses={200: CreationOptionsResult},
          summary="Creation options for a new passkey (the caller's existing ones excluded)")
def passkey_creation_options():
    return reply(CreationOptionsResult.model_construct(options=passkeys.creation_options(caller(), now())))


@endpoint(bp, "/users/me/passkeys", "POST", body=PasskeyParams, auth=True, fresh=True, responses={201: PasskeyResult},
          errors=(400, 409), summary="Register a passkey from a RegistrationResponseJSON")
def add_passkey(params: PasskeyParams):
    passkey = passkeys.register(caller(), params.credential, params.name, now())
    return reply(PasskeyResult.model_construct(passkey=PasskeyOut.of(passkey)), 201)


@endpoint(bp, "/users/me/passkeys/<passkey_id>", "DELETE", auth=True, fresh=True, responses={204: None},
          errors=(404,), summary="Remove one of the caller's passkeys")
def remove_passkey(passkey_id: str):
    passkeys.remove(caller(), passkey_id, now())
    return reply(None, 204)


@endpoint(bp, "/auth/mfa/verify", "POST", body=MfaVerifyParams, responses={200: AuthResult}, errors=(400, 401),
          summary="Finish a sign-in that answered mfa_required: a TOTP code, a recovery code or a passkey assertion")
def verify_mfa(params: MfaVerifyParams):
    return signed_in(stepup.verify(params, user_agent=client()["user_agent"], now=now()), 200)


@endpoint(bp, "/auth/mfa/passkey-options", "POST", body=MfaTokenParams, responses={200: RequestOptionsResult},
          errors=(401,), summary="Request options for the passkeys of the user an mfaToken waits for")
def mfa_passkey_options(params: MfaTokenParams):
    return reply(RequestOptionsResult.model_construct(options=stepup.passkey_options(params.mfa_token, now())))


@endpoint(bp, "/auth/passkey/options", "POST", responses={200: PasswordlessOptionsResult},
          summary="Request options for a passwordless sign-in with any discoverable passkey")
def passwordless_options():
    challenge_id, options = passkeys.request_options(None, "login", now())
    return reply(PasswordlessOptionsResult.model_construct(options=options, challenge_id=challenge_id))


@endpoint(bp, "/auth/passkey/login", "POST", body=PasskeyLoginParams, responses={200: AuthResult},
          errors=(400, 401), summary="Sign in with a passkey alone (a user-verified one counts as two factors)")
def passkey_login(params: PasskeyLoginParams):
    return signed_in(stepup.passkey_login(params, now=now(), **client()), 200)


@endpoint(bp, "/auth/reauthenticate", "POST", body=ReauthenticateParams, auth=True, responses={200: TokensResult},
          errors=(400,), summary="Prove the password (and the second factor) again: a new pair with a fresh auth_time")
def reauthenticate(params: ReauthenticateParams):
    pair = stepup.reauthenticate(caller(), params, now())
    return reply(TokensResult.model_construct(tokens=TokensOut.of(pair)))


@endpoint(bp, "/auth/reauthenticate/passkey-options", "POST", auth=True, responses={200: RequestOptionsResult},
          summary="Request options for reauthenticating with one of the caller's passkeys")
def reauth_passkey_options():
    return reply(RequestOptionsResult.model_construct(options=stepup.reauth_passkey_options(caller(), now())))


@endpoint(bp, "/admin/users/<user_id>/mfa", "DELETE", auth=True, responses={204: None}, errors=(403, 404),
          summary="Remove every factor and recovery code of an account (a user who lost their device)")
def reset_mfa(user_id: str):
    admin.require_admin(caller())
    factors.reset(admin.get_user(user_id), now())
    return reply(None, 204)
