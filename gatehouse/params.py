"""Typed, validated parameters of each use case; the JSON API, the portal and the CLI parse into these.

Field names are the contract's camelCase words; unknown fields are refused, types are strict.
`parse` and `parse_query` are the one validation step: text with NUL or a lone surrogate is refused
anywhere in the input, every field is checked after its normalisation against the limits of the
column it is stored in, and every number and date is range-checked. A params class whose text
field has no length bound or whose number has no range is refused when the class is defined, so
no input can reach the database unbounded. `parse` turns every complaint into one ValidationFailed
that names each bad field.
"""
from __future__ import annotations

import re
import unicodedata
import uuid
from functools import cached_property, lru_cache
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email
import annotated_types
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model,
                      field_validator)
from pydantic.alias_generators import to_camel

from gatehouse.errors import PreconditionFailed, ValidationFailed
from gatehouse import preferences
from gatehouse.i18n import N_
from gatehouse.security import passwords
from gatehouse.vocabulary import Role, ShowStatus, SubscriptionStatus, Tier


def _document_non_null(schema: dict, model: type[Params]) -> None:
    """In the JSON schema of a model, a non_null field is its type alone, without the null of its
    `X | None` (the None of the annotation only means "left out")."""
    for name in model.non_null:
        prop = schema.get("properties", {}).get(name, {})
        branches = [branch for branch in prop.get("anyOf", ()) if branch != {"type": "null"}]
        if prop.get("default", ...) is None:
            del prop["default"]
        if len(branches) == 1:
            prop.pop("anyOf")
            prop.update(branches[0])


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel,
                              validate_by_alias=True, validate_by_name=False, frozen=True,
                              json_schema_extra=_document_non_null)
    # Fields a client may read but never write: refused with "is read-only" rather than "unknown".
    read_only: ClassVar[frozenset[str]] = frozenset()
    # Optional fields (wire names) that may be left out but never sent as null: refused here, and
    # documented without null by _document_non_null.
    non_null: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value, info: ValidationInfo):
        if value is None and cls.non_null and to_camel(info.field_name) in cls.non_null:
            raise ValueError(N_("must not be null"))
        return value

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, info in cls.model_fields.items():
            _require_bounds(cls, name, info.annotation, list(info.metadata))


def _require_bounds(cls: type, name: str, annotation, metadata: list) -> None:
    """Every text field has a maximum length and every number a range, or the class is refused."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _require_bounds(cls, name, base, [*metadata, *extra])
    if origin is Union or type(annotation).__name__ == "UnionType":
        for member in get_args(annotation):
            _require_bounds(cls, name, member, metadata)
        return
    flat = [inner for item in metadata for inner in (getattr(item, "metadata", None) or [item])]
    kinds = {type(item) for item in flat}
    if annotation is str and annotated_types.MaxLen not in kinds:
        raise TypeError(f"{cls.__name__}.{name}: a text field needs a max_length")
    if annotation is int and not (kinds & {annotated_types.Le, annotated_types.Lt}
                                  and kinds & {annotated_types.Ge, annotated_types.Gt}):
        raise TypeError(f"{cls.__name__}.{name}: a number field needs a range (ge and le)")


# Code points no stored or logged text may hold: NUL (PostgreSQL refuses it) and lone surrogates.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _bad_text(value: Any, path: str) -> list[dict]:
    """Where NUL or a lone surrogate hides in `value` (keys included), as field errors."""
    if isinstance(value, str):
        return [{"field": path or "body", "message": "must not contain NUL or lone surrogates"}] \
            if _BAD_TEXT.search(value) else []
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            if _BAD_TEXT.search(key_text):
                found.append({"field": path or "body", "message": "keys must not contain NUL or lone surrogates"})
                continue
            found += _bad_text(item, f"{path}.{key_text}" if path else key_text)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found += _bad_text(item, f"{path}.{index}" if path else str(index))
    return found


def _clean_message(error: dict, read_only: frozenset[str]) -> tuple[str, str]:
    loc = error["loc"]
    field = ".".join(str(part) for part in loc) or "body"
    if error["type"] == "extra_forbidden":
        return field, N_("is read-only") if field in read_only else N_("is not a known field")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if error["type"] == "missing":
        message = N_("is required")
    return field, message


def _validate(model: type[Params], data: dict, *, strict: bool) -> Params:
    bad = _bad_text(data, "")
    if bad:
        raise ValidationFailed(errors=bad)
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        errors = [dict(zip(("field", "message"), _clean_message(e, model.read_only)))
                  for e in exc.errors(include_url=False, include_input=False)]
        raise ValidationFailed(errors=errors) from None


def parse(model: type[Params], data: Any) -> Params:
    """The JSON API, the portal and the CLI all parse through here: one set of rules for every surface."""
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.",
                               errors=[{"field": "body", "message": "must be a JSON object"}])
    return _validate(model, data, strict=True)


# ---- field types -------------------------------------------------------------------------------

def normalise_email(value: str) -> str:
    """The one form in which an address is stored, mailed and shown: NFKC (so full-width and other
    compatibility forms of a character are that character), then email-validator's normal form:
    syntax and RFC 5321 lengths checked, the domain lower-cased in its Unicode form (an A-label
    `xn--…` becomes its U-label; IDNA 2008 with UTS #46 mapping), the local part's case kept.
    EmailNotValidError when it is no address. No DNS look-up on the request path."""
    return validate_email(unicodedata.normalize("NFKC", value).strip(), check_deliverability=False).normalized


# The users.email and users.email_key columns (String(320)): an address is refused, not cut, when
# its stored form or its key (NFKC may expand a character into many) would not fit.
EMAIL_COLUMN_LENGTH = 320


def _email(value: str) -> str:
    try:
        normalized = normalise_email(value)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    if max(len(normalized), len(email_key(normalized))) > EMAIL_COLUMN_LENGTH:
        raise ValueError(f"must be at most {EMAIL_COLUMN_LENGTH} characters once normalised")
    return normalized


def email_key(email: str) -> str:
    """The unique key of an address: its normal form (normalise_email), lower-cased. Text that is no
    address (a sign-in identifier, a search) keys as NFKC, trimmed and lower-cased."""
    try:
        email = normalise_email(email)
    except EmailNotValidError:
        email = unicodedata.normalize("NFKC", email).strip()
    return email.lower()


USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{2,31}")


def _username(value: str) -> str:
    if not USERNAME_RE.fullmatch(value):
        raise ValueError(N_("must be 3-32 letters, digits, '_', '.' or '-', starting with a letter or digit"))
    return value


def username_key(username: str) -> str:
    return unicodedata.normalize("NFKC", username).casefold()


# Control (Cc), format (Cf: bidirectional overrides and isolates, zero-width spaces and joiners, soft
# hyphen, tags) and line or paragraph separators: invisible or reordering text that would let one
# name pass for another in admin lists and mails.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _display_name(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 100:
        raise ValueError(N_("must be 1-100 characters"))
    if any(unicodedata.category(ch) in INVISIBLE_CATEGORIES for ch in value):
        raise ValueError(N_("must not contain control, invisible or text-direction characters"))
    return value


def _avatar_url(value: str) -> str:
    if len(value) > 2048:
        raise ValueError(N_("must be at most 2048 characters"))
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(N_("must not contain spaces or control characters"))
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(N_("must be an https URL")) from None
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(N_("must be an https URL"))
    return value


# BCP 47's shape (language, then subtags), checked before babel is asked whether it knows the tag.
LOCALE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


def _locale(value: str) -> str:
    if not LOCALE_RE.fullmatch(value):
        raise ValueError(N_("must be a BCP 47 language tag such as en or pt-BR"))
    try:
        locale = Locale.parse(value, sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(N_("must be a BCP 47 language tag such as en or pt-BR")) from None
    return str(locale).replace("_", "-")


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _timezone(value: str) -> str:
    if value not in _zones():
        raise ValueError(N_("must be an IANA time zone name such as Europe/Paris"))
    return value


def _upper(value: str) -> str:
    return value.upper()


def _zone_names() -> dict:
    return {"enum": sorted(_zones())}


# The json_schema_extra of each type documents what its validator enforces (in /openapi.json).
Email = Annotated[str, Field(max_length=320, json_schema_extra={"format": "idn-email"}), AfterValidator(_email)]
Password = Annotated[str, Field(min_length=1, max_length=passwords.MAX_LENGTH)]
Username = Annotated[str, Field(max_length=32, json_schema_extra={"pattern": f"^{USERNAME_RE.pattern}$",
                                                                   "minLength": 3}), AfterValidator(_username)]
# No control character (Cc) anywhere, and one character at least that str.strip() keeps.
_NO_CONTROL = r"[^\u0000-\u001f\u007f-\u009f]*"
_KEPT = r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
DisplayName = Annotated[str, Field(max_length=200, json_schema_extra={
    "pattern": f"^{_NO_CONTROL}{_KEPT}{_NO_CONTROL}$",
    "description": "1-100 characters once trimmed, no control characters"}), AfterValidator(_display_name)]
AvatarUrl = Annotated[str, Field(max_length=2048, json_schema_extra={"pattern": "^[Hh][Tt][Tt][Pp][Ss]://"}),
                      AfterValidator(_avatar_url)]
LocaleTag = Annotated[str, Field(max_length=35, json_schema_extra={"pattern": f"^{LOCALE_RE.pattern}$"}),
                      AfterValidator(_locale)]
TimeZone = Annotated[str, Field(max_length=64, json_schema_extra=lambda schema: schema.update(_zone_names())),
                     AfterValidator(_timezone)]
RegionCode = Annotated[str, Field(max_length=2, pattern=r"^[A-Za-z]{2}$"), AfterValidator(_upper)]
CurrencyCode = Annotated[str, Field(max_length=3, pattern=r"^[A-Za-z]{3}$"), AfterValidator(_upper)]
Code = Annotated[str, Field(max_length=6, pattern=r"^[0-9]{6}$")]
ShortText = Annotated[str, Field(min_length=1, max_length=100)]


# ---- use cases ---------------------------------------------------------------------------------

class DeviceParams(Params):
    id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    name: ShortText
    platform: Annotated[str, Field(min_length=1, max_length=32)]
    app_version: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class RegisterParams(Params):
    email: Email
    password: Password
    username: Username | None = None
    display_name: DisplayName | None = None
    region: RegionCode | None = None
    currency: CurrencyCode | None = None
    locale: LocaleTag | None = None
    timezone: TimeZone | None = None
    device: DeviceParams | None = None


class LoginParams(Params):
    email: Annotated[str, Field(min_length=1, max_length=320)] | None = None
    username: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    password: Password
    device: DeviceParams | None = None

    def model_post_init(self, _context) -> None:
        if (self.email is None) == (self.username is None):
            raise ValidationFailed("Give either email or username.",
                                   errors=[{"field": "email", "message": "give either email or username"}])

    @cached_property
    def identifier(self) -> str:
        """The normalised sign-in identifier (an email key or a username key), worked out once."""
        return email_key(self.email) if self.email is not None else username_key(self.username)


class RefreshParams(Params):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class LogoutParams(Params):
    all_sessions: bool = False


class Empty(Params):
    """A body that must carry nothing (or be absent)."""


# ---- profile and preferences (PATCH /users/me) -------------------------------------------------
# In a patch, a field left out is unchanged and an explicit null clears it (JSON Merge Patch).

def _section_patch(section: str) -> type[Params]:
    """A section of gatehouse.preferences.SHAPE as a patch: every field optional, null clears it."""
    fields = {name: (kind | None, None) for name, (kind, _) in preferences.SHAPE[section].items()}
    return create_model(f"{section.title()}Patch", __base__=Params, **fields)


class _MergePatch(Params):
    def as_merge_patch(self) -> dict:
        """The patch as given, camelCase, with its nulls (which remove a key back to its default)."""
        return self.model_dump(by_alias=True, exclude_unset=True)


PreferencesPatch = create_model("PreferencesPatch", __base__=_MergePatch,
                                **{section: (_section_patch(section) | None, None) for section in preferences.SHAPE})


class ProfilePatch(Params):
    read_only: ClassVar[frozenset[str]] = frozenset({
        "id", "email", "emailVerified", "role", "showStatus", "subscription", "version",
        "createdAt", "updatedAt", "lastLoginAt"})
    # These always have a value; null would not mean "back to the default" unambiguously.
    non_null: ClassVar[frozenset[str]] = frozenset({"region", "currency", "locale", "timezone"})

    username: Username | None = None
    display_name: DisplayName | None = None
    avatar_url: AvatarUrl | None = None
    region: RegionCode | None = None
    currency: CurrencyCode | None = None
    locale: LocaleTag | None = None
    timezone: TimeZone | None = None
    preferences: PreferencesPatch | None = None

    def given(self, name: str) -> bool:
        return name in self.model_fields_set


class PasswordChangeParams(Params):
    current_password: Password
    new_password: Password


class DeleteAccountParams(Params):
    password: Password


# users.version is an INTEGER column: a version beyond it names no state the profile was ever in.
MAX_VERSION = 2**31 - 1
_VERSION_RE = re.compile(r"[0-9]{1,10}")


def version_number(text: str) -> int | None:
    """A profile version as a client sends it (ETag value, form field), or None when it cannot be one:
    ASCII digits only ("²" is a digit to str.isdigit, not to int), and within the column's range."""
    if not _VERSION_RE.fullmatch(text):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_VERSION else None


def precondition_version(text: str) -> int:
    """The version a precondition names; one that no profile can have fails the precondition (412)."""
    value = version_number(text)
    if value is None:
        raise PreconditionFailed("The version must be a whole number of the profile's ETag.")
    return value


def row_id(value: str) -> str | None:
    """An id taken from a URL in its stored form (a UUID), or None when it cannot name any row."""
    try:
        return str(uuid.UUID(value)) if len(value) <= 45 else None
    except ValueError:
        return None


class ForgotPasswordParams(Params):
    email: Email


class ResetPasswordParams(Params):
    email: Email
    code: Code
    new_password: Password


class VerifyEmailParams(Params):
    code: Code


class EmailChangeParams(Params):
    new_email: Email


class LinkTokenParams(Params):
    """The token of a link mailed by the service ("this wasn't me", revert an email change)."""

    token: Annotated[str, Field(min_length=1, max_length=128)]


def parse_query(model: type[Params], args: dict[str, list[str]]) -> Params:
    """Query-string parameters into `model`: each given at most once, an empty value counts as
    absent, and strings convert to the field's type ("20" -> 20, "true" -> True)."""
    repeated = [name for name, values in args.items() if len(values) > 1]
    if repeated:
        raise ValidationFailed(errors=[{"field": name, "message": "must be given at most once"} for name in repeated])
    data = {name: values[0] for name, values in args.items() if values and values[0] != ""}
    return _validate(model, data, strict=False)  # query strings carry only text: "10" may be a number


# ---- admin (/admin/users) ----------------------------------------------------------------------

def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(N_("must be an ISO 8601 timestamp such as 2026-01-31T00:00:00Z")) from None
    if parsed.tzinfo is None:
        raise ValueError(N_("must name its time zone (Z for UTC)"))
    try:
        # 0001-01-01T00:00:00+01:00 is a moment before the first one a datetime (or column) holds.
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(N_("must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")) from None


Timestamp = Annotated[str, Field(max_length=40), AfterValidator(_timestamp)]


class AdminUsersQuery(Params):
    """GET /admin/users. Hidden users are listed only with showStatus=hidden (and then only they);
    soft-deleted users only with includeDeleted=true (then with the others)."""

    q: Annotated[str, Field(min_length=1, max_length=320)] | None = None
    show_status: ShowStatus = "visible"
    include_deleted: bool = False
    cursor: Annotated[str, Field(max_length=512)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class SecurityEventsQuery(Params):
    """GET /users/me/security-events (and the admin's): newest first, `cursor` from the previous page."""

    cursor: Annotated[str, Field(max_length=512)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class SubscriptionPatch(Params):
    tier: Tier | None = None
    status: SubscriptionStatus | None = None
    current_period_end: Timestamp | None = None  # null clears it

    non_null: ClassVar[frozenset[str]] = frozenset({"tier", "status"})

    def given(self, name: str) -> bool:
        return name in self.model_fields_set


class AdminUserPatch(Params):
    read_only: ClassVar[frozenset[str]] = frozenset({
        "id", "email", "emailVerified", "username", "displayName", "avatarUrl", "region", "currency", "locale",
        "timezone", "preferences", "version", "createdAt", "updatedAt", "lastLoginAt", "deletedAt"})

    show_status: ShowStatus | None = None
    role: Role | None = None
    disabled: bool | None = None
    subscription: SubscriptionPatch | None = None

    non_null: ClassVar[frozenset[str]] = frozenset({"showStatus", "role", "disabled", "subscription"})

    def given(self, name: str) -> bool:
        return name in self.model_fields_set


# ---- second factors and passkeys (CONTRACT §9) -------------------------------------------------
# WebAuthn Level 3 JSON forms: binary members are base64url strings.

Base64Url = Annotated[str, Field(min_length=1, max_length=16384, pattern=r"^[A-Za-z0-9_-]+={0,2}$")]
# A TOTP code (6 digits) or a recovery code (xxxxx-xxxxx, case and hyphen free).
SecondFactorCode = Annotated[str, Field(min_length=6, max_length=32)]
MfaToken = Annotated[str, Field(min_length=1, max_length=128)]


class AttestationResponseJSON(Params):
    client_data_json: Base64Url = Field(alias="clientDataJSON")
    attestation_object: Base64Url
    authenticator_data: Base64Url | None = None
    transports: list[Annotated[str, Field(max_length=32)]] | None = Field(default=None, max_length=10)
    public_key_algorithm: Annotated[int, Field(ge=-65536, le=65535)] | None = None  # a COSE algorithm
    public_key: Base64Url | None = None


class AssertionResponseJSON(Params):
    client_data_json: Base64Url = Field(alias="clientDataJSON")
    authenticator_data: Base64Url
    signature: Base64Url
    user_handle: Base64Url | None = None


class _PublicKeyCredentialJSON(Params):
    id: Base64Url
    raw_id: Base64Url
    authenticator_attachment: Literal["platform", "cross-platform"] | None = None
    client_extension_results: dict = Field(default_factory=dict)
    type: Literal["public-key"]

    def as_json(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True)


class RegistrationResponseJSON(_PublicKeyCredentialJSON):
    """What navigator.credentials.create() gives, as PublicKeyCredential.toJSON() writes it."""

    response: AttestationResponseJSON


class AuthenticationResponseJSON(_PublicKeyCredentialJSON):
    """What navigator.credentials.get() gives, as PublicKeyCredential.toJSON() writes it."""

    response: AssertionResponseJSON


class TotpConfirmParams(Params):
    code: Code


class PasskeyParams(Params):
    credential: RegistrationResponseJSON
    name: ShortText | None = None


def _one_proof(params) -> None:
    if params.code is not None and params.credential is not None:
        raise ValidationFailed("Give either code or credential, not both.",
                               errors=[{"field": "code", "message": "give either code or credential, not both"}])


class MfaVerifyParams(Params):
    mfa_token: MfaToken
    code: SecondFactorCode | None = None
    credential: AuthenticationResponseJSON | None = None

    def model_post_init(self, _context) -> None:
        _one_proof(self)
        if self.code is None and self.credential is None:
            raise ValidationFailed("Give a code or a passkey credential.",
                                   errors=[{"field": "code", "message": "give a code or a credential"}])


class MfaTokenParams(Params):
    mfa_token: MfaToken


class PasskeyLoginParams(Params):
    challenge_id: Annotated[str, Field(min_length=1, max_length=64)]
    credential: AuthenticationResponseJSON
    device: DeviceParams | None = None


class ReauthenticateParams(Params):
    password: Password
    code: SecondFactorCode | None = None
    credential: AuthenticationResponseJSON | None = None

    def model_post_init(self, _context) -> None:
        _one_proof(self)
