"""Response schemas of the JSON API: they serialise every reply and feed /openapi.json."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema, create_model
from pydantic.alias_generators import to_camel

from gatehouse import preferences
from gatehouse.clock import iso_z
from gatehouse.models import Device, Session, User
from gatehouse.services import security_events
from gatehouse.services.tokens import TokenPair
from gatehouse.vocabulary import Role, ShowStatus, SubscriptionStatus, Tier


Timestamp = Annotated[datetime, PlainSerializer(iso_z, return_type=str)]


class Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True, validate_by_name=True)


SECTION_SCHEMAS = {"notifications": "NotificationPreferences", "ai": "AiPreferences", "focus": "FocusPreferences"}
# Every section, every field present (defaults filled in): gatehouse.preferences.SHAPE.
PreferencesOut = create_model("PreferencesOut", __base__=Out, **{
    section: (create_model(SECTION_SCHEMAS[section], __base__=Out,
                           **{name: (kind, ...) for name, (kind, _) in fields.items()}), ...)
    for section, fields in preferences.SHAPE.items()})


class SubscriptionOut(Out):
    tier: Tier
    status: SubscriptionStatus
    current_period_end: Timestamp | None


class UserOut(Out):
    id: str
    email: str
    email_verified: bool
    username: str | None
    display_name: str | None
    avatar_url: str | None
    region: str
    currency: str
    locale: str
    timezone: str
    role: Role
    preferences: PreferencesOut
    subscription: SubscriptionOut
    show_status: ShowStatus
    last_login_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    version: int

    @classmethod
    def of(cls, user: User) -> UserOut:
        """From a User, or a caller's snapshot of one (services.sessions.Caller.snapshot.user)."""
        sub = user.subscription
        return cls.model_construct(
            id=user.id, email=user.email, email_verified=user.email_verified_at is not None,
            username=user.username, display_name=user.display_name, avatar_url=user.avatar_url,
            region=user.region, currency=user.currency, locale=user.locale, timezone=user.timezone,
            role=user.role,
            preferences=PreferencesOut.model_validate(
                preferences.effective(user.settings.preferences if user.settings else None)),
            subscription=SubscriptionOut.model_construct(
                tier=sub.tier if sub else "free", status=sub.status if sub else "active",
                current_period_end=sub.current_period_end if sub else None),
            show_status=user.show_status, last_login_at=user.last_login_at, created_at=user.created_at,
            updated_at=user.updated_at, version=user.version,
        )


class TokensOut(Out):
    token_type: Literal["Bearer"] = "Bearer"
    access_token: str
    refresh_token: str
    issued_at: Timestamp
    expires_at: Timestamp
    refresh_expires_at: Timestamp

    @classmethod
    def of(cls, pair: TokenPair) -> TokensOut:
        return cls.model_construct(token_type="Bearer", access_token=pair.access_token,
                                   refresh_token=pair.refresh_token, issued_at=pair.issued_at,
                                   expires_at=pair.expires_at, refresh_expires_at=pair.refresh_expires_at)


class DeviceOut(Out):
    id: str
    name: str
    platform: str
    app_version: str | None
    last_seen_at: Timestamp

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls.model_construct(id=device.id, name=device.name, platform=device.platform,
                                   app_version=device.app_version, last_seen_at=device.last_seen_at)


class SessionOut(Out):
    id: str
    current: bool
    created_at: Timestamp
    last_seen_at: Timestamp
    expires_at: Timestamp
    ip_address: str | None
    user_agent: str | None
    device: DeviceOut | None

    @classmethod
    def of(cls, session: Session, current_id: str | None) -> SessionOut:
        """From a Session, or a caller's snapshot of one (services.sessions.Caller.snapshot.session)."""
        return cls.model_construct(
            id=session.id, current=session.id == current_id, created_at=session.created_at,
            last_seen_at=session.last_seen_at, expires_at=session.expires_at, ip_address=session.ip_address,
            user_agent=session.user_agent, device=DeviceOut.of(session.device) if session.device else None)


class AuthResult(Out):
    user: UserOut
    tokens: TokensOut
    session: SessionOut


class TokensResult(Out):
    tokens: TokensOut


class MeResult(Out):
    user: UserOut
    session: SessionOut


class UserResult(Out):
    user: UserOut


class RegionOut(Out):
    code: str
    name: str
    default_currency: str
    currencies: list[str]


class RegionsResult(Out):
    regions: list[RegionOut]


class HealthOut(Out):
    status: Literal["ok"]
    checks: dict[str, bool] = {}


class SessionsResult(Out):
    sessions: list[SessionOut]


class DevicesResult(Out):
    devices: list[DeviceOut]


class JwksResult(Out):
    """RFC 7517 JWK Set: the public keys that verify access tokens (empty with HS256)."""

    keys: list[dict[str, str]]


class AdminUserOut(UserOut):
    """The user as admins see it: with the account state that the admin API changes."""

    disabled: bool
    deleted_at: Timestamp | None

    @classmethod
    def of(cls, user: User) -> AdminUserOut:
        base = UserOut.of(user)
        return cls.model_construct(**dict(base), disabled=user.disabled, deleted_at=user.deleted_at)


class AdminUserResult(Out):
    user: AdminUserOut


class AdminUsersResult(Out):
    users: list[AdminUserOut]
    next_cursor: str | None


# ---- second factors and passkeys ---------------------------------------------------------------

class TotpOut(Out):
    created_at: Timestamp


class PasskeyOut(Out):
    id: str
    name: str
    created_at: Timestamp
    last_used_at: Timestamp | None

    @classmethod
    def of(cls, passkey) -> PasskeyOut:
        return cls.model_construct(id=passkey.id, name=passkey.name, created_at=passkey.created_at,
                                   last_used_at=passkey.last_used_at)


class MfaResult(Out):
    totp: TotpOut | None
    passkeys: list[PasskeyOut]
    recovery_codes_left: int


class TotpEnrolment(Out):
    secret: str
    otpauth_uri: str
    qr_svg: str
    expires_at: Timestamp


class RecoveryCodesResult(Out):
    recovery_codes: list[str] | None


class PasskeyResult(Out):
    passkey: PasskeyOut


_B64 = {"type": "string", "description": "base64url"}
_DESCRIPTORS = {"type": "array", "items": {"type": "object", "required": ["id", "type"], "properties": {
    "id": _B64, "type": {"const": "public-key"}, "transports": {"type": "array", "items": {"type": "string"}}}}}
CREATION_OPTIONS = WithJsonSchema({
    "title": "PublicKeyCredentialCreationOptionsJSON", "type": "object",
    "description": "WebAuthn Level 3 creation options in their JSON form (binary members base64url).",
    "required": ["rp", "user", "challenge", "pubKeyCredParams"],
    "properties": {
        "rp": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
        "user": {"type": "object", "properties": {"id": _B64, "name": {"type": "string"},
                                                  "displayName": {"type": "string"}}},
        "challenge": _B64,
        "pubKeyCredParams": {"type": "array", "items": {"type": "object", "properties": {
            "type": {"const": "public-key"}, "alg": {"type": "integer"}}}},
        "timeout": {"type": "integer"},
        "excludeCredentials": _DESCRIPTORS,
        "authenticatorSelection": {"type": "object", "properties": {
            "residentKey": {"const": "required"}, "requireResidentKey": {"type": "boolean"},
            "userVerification": {"const": "preferred"}}},
        "attestation": {"const": "none"},
    }})
REQUEST_OPTIONS = WithJsonSchema({
    "title": "PublicKeyCredentialRequestOptionsJSON", "type": "object",
    "description": "WebAuthn Level 3 request options in their JSON form; allowCredentials is empty for a "
                   "discoverable (passwordless) sign-in.",
    "required": ["challenge"],
    "properties": {"challenge": _B64, "timeout": {"type": "integer"}, "rpId": {"type": "string"},
                   "allowCredentials": _DESCRIPTORS, "userVerification": {"const": "preferred"}}})


class CreationOptionsResult(Out):
    options: Annotated[dict, CREATION_OPTIONS]


class RequestOptionsResult(Out):
    options: Annotated[dict, REQUEST_OPTIONS]


class PasswordlessOptionsResult(RequestOptionsResult):
    challenge_id: str


# ---- security activity -------------------------------------------------------------------------

class SecurityEventOut(Out):
    """gatehouse.services.security_events.as_json, documented: the same object `security:event` carries."""

    id: str
    kind: Literal[security_events.KINDS]
    at: Timestamp
    ip_address: str | None
    user_agent: str | None
    session_id: str | None
    device: DeviceOut | None
    detail: dict

    @classmethod
    def of(cls, event) -> SecurityEventOut:
        return cls.model_validate(security_events.as_json(event))


class SecurityEventsResult(Out):
    events: list[SecurityEventOut]
    next_cursor: str | None
