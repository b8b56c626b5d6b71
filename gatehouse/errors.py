"""The catalogue of domain errors, each with its stable contract `code` and HTTP status."""
from __future__ import annotations

from gatehouse.i18n import N_  # titles and details are translated where they are shown


class GatehouseError(Exception):
    code = "internal_error"
    status = 500
    title = N_("Internal error")
    detail = N_("The request could not be completed.")

    def __init__(self, detail: str | None = None, *, errors: list[dict] | None = None,
                 retry_after: int | None = None, extensions: dict | None = None):
        super().__init__(detail or self.detail)
        if detail:
            self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after
        # RFC 9457 extension members, e.g. mfa_required's mfaToken, methods and expiresAt.
        self.extensions = extensions or {}


def _error(name: str, code: str, status: int, title: str, detail: str) -> type[GatehouseError]:
    return type(name, (GatehouseError,), {"code": code, "status": status, "title": title, "detail": detail})


BadRequest = _error("BadRequest", "bad_request", 400, N_("Bad request"), N_("The request could not be understood."))
ValidationFailed = _error("ValidationFailed", "validation_failed", 422, N_("Validation failed"),
                          N_("One or more fields are invalid."))
InvalidCredentials = _error("InvalidCredentials", "invalid_credentials", 401, N_("Invalid credentials"),
                            N_("The email, username or password is incorrect."))
EmailTaken = _error("EmailTaken", "email_taken", 409, N_("Email taken"),
                    N_("An account with this email address already exists."))
UsernameTaken = _error("UsernameTaken", "username_taken", 409, N_("Username taken"),
                       N_("This username is already taken."))
TokenExpired = _error("TokenExpired", "token_expired", 401, N_("Token expired"), N_("The access token has expired."))
TokenInvalid = _error("TokenInvalid", "token_invalid", 401, N_("Token invalid"), N_("The token is missing or invalid."))
TokenRevoked = _error("TokenRevoked", "token_revoked", 401, N_("Token revoked"), N_("The session has been revoked."))
RefreshTokenReused = _error("RefreshTokenReused", "refresh_token_reused", 401, N_("Refresh token reused"),
                            N_("This refresh token was already used; the session has been revoked."))
InvalidCode = _error("InvalidCode", "invalid_code", 400, N_("Invalid code"), N_("The code is wrong, used or expired."))
RateLimited = _error("RateLimited", "rate_limited", 429, N_("Too many requests"),
                     N_("Too many requests; try again later."))
NotFound = _error("NotFound", "not_found", 404, N_("Not found"), N_("The resource does not exist."))
Forbidden = _error("Forbidden", "forbidden", 403, N_("Forbidden"), N_("You are not allowed to do this."))
PreconditionFailed = _error("PreconditionFailed", "precondition_failed", 412, N_("Precondition failed"),
                            N_("The resource has changed since it was read."))
IdempotencyKeyReused = _error("IdempotencyKeyReused", "idempotency_key_reused", 422, N_("Idempotency key reused"),
                              N_("This Idempotency-Key was used with a different request."))
IdempotencyKeyInProgress = _error("IdempotencyKeyInProgress", "idempotency_key_in_progress", 409,
                                  N_("Idempotency key in progress"),
                                  N_("A request with this Idempotency-Key is still being processed."))
PayloadTooLarge = _error("PayloadTooLarge", "payload_too_large", 413, N_("Payload too large"),
                         N_("The request body is larger than 64 KiB."))
UnsupportedMediaType = _error("UnsupportedMediaType", "unsupported_media_type", 415, N_("Unsupported media type"),
                              N_("The request body must be application/json."))
PasswordTooWeak = _error("PasswordTooWeak", "password_too_weak", 422, N_("Password too weak"),
                         N_("Choose a longer or less common password."))
ServiceUnavailable = _error("ServiceUnavailable", "service_unavailable", 503, N_("Service unavailable"),
                            N_("The service is busy; try again shortly."))
MfaRequired = _error("MfaRequired", "mfa_required", 401, N_("Second factor required"),
                     N_("The password is right; finish signing in with a second factor at /auth/mfa/verify."))
ReauthenticationRequired = _error("ReauthenticationRequired", "reauthentication_required", 401,
                                  N_("Reauthentication required"),
                                  N_("Confirm who you are again (POST /auth/reauthenticate) before this change."))
InvalidMfaCode = _error("InvalidMfaCode", "invalid_mfa_code", 400, N_("Invalid code"),
                        N_("The code is wrong, already used or expired."))
FactorExists = _error("FactorExists", "factor_exists", 409, N_("Factor exists"),
                      N_("This second factor is already set up."))
WebauthnFailed = _error("WebauthnFailed", "webauthn_failed", 400, N_("Passkey not accepted"),
                        N_("The passkey response could not be verified."))
UriTooLong = _error("UriTooLong", "bad_request", 414, N_("URI too long"),
                    N_("The request path is longer than 2048 characters."))
MethodNotAllowed = _error("MethodNotAllowed", "method_not_allowed", 405, N_("Method not allowed"),
                          N_("This method is not allowed on this resource."))
InternalError = _error("InternalError", "internal_error", 500, N_("Internal error"),
                       N_("The request could not be completed."))


def field_error(field: str, message: str, error: type[GatehouseError] = ValidationFailed) -> GatehouseError:
    """An error about one named field, e.g. field_error("username", "is too short")."""
    return error(f"{field} {message}", errors=[{"field": field, "message": message}])
