"""WebAuthn Level 3 ceremonies (duo-labs `webauthn`): options in their JSON forms, and verification.

No storage here: the services keep challenges and credentials. Options ask for a discoverable
credential (`residentKey: required`), `userVerification: preferred` and `none` attestation.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from webauthn import (generate_authentication_options, generate_registration_options, options_to_json,
                      verify_authentication_response, verify_registration_response)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (AttestationConveyancePreference, AuthenticatorSelectionCriteria,
                                      AuthenticatorTransport, PublicKeyCredentialDescriptor, ResidentKeyRequirement,
                                      UserVerificationRequirement)

from gatehouse.errors import WebauthnFailed
from gatehouse.i18n import N_

TIMEOUT_MS = 300_000  # the challenge lives 5 minutes


@dataclass(frozen=True)
class Party:
    rp_id: str
    origins: list[str]
    name: str = "Gatehouse"


@dataclass(frozen=True)
class NewCredential:
    credential_id: str  # base64url
    public_key: bytes
    sign_count: int
    user_verified: bool
    backed_up: bool


@dataclass(frozen=True)
class Assertion:
    credential_id: str
    new_sign_count: int
    user_verified: bool
    backed_up: bool


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _descriptors(credentials: list[tuple[str, list | None]]) -> list[PublicKeyCredentialDescriptor]:
    out = []
    for credential_id, transports in credentials:
        known = [AuthenticatorTransport(t) for t in transports or () if t in AuthenticatorTransport._value2member_map_]
        out.append(PublicKeyCredentialDescriptor(id=b64url_decode(credential_id), transports=known or None))
    return out


def creation_options(party: Party, *, user_handle: bytes, user_name: str, display_name: str, challenge: bytes,
                     exclude: list[tuple[str, list | None]]) -> dict:
    """PublicKeyCredentialCreationOptionsJSON."""
    options = generate_registration_options(
        rp_id=party.rp_id, rp_name=party.name, user_id=user_handle, user_name=user_name,
        user_display_name=display_name, challenge=challenge, timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, require_resident_key=True,
            user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=_descriptors(exclude))
    return json.loads(options_to_json(options))


def request_options(party: Party, *, challenge: bytes, allow: list[tuple[str, list | None]]) -> dict:
    """PublicKeyCredentialRequestOptionsJSON; an empty `allow` asks for a discoverable credential."""
    options = generate_authentication_options(
        rp_id=party.rp_id, challenge=challenge, timeout=TIMEOUT_MS, allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement.PREFERRED)
    return json.loads(options_to_json(options))


def challenge_of(credential: dict) -> bytes:
    """The challenge the browser signed, read from clientDataJSON (checked again by the verification)."""
    try:
        client_data = json.loads(b64url_decode(credential["response"]["clientDataJSON"]))
        return b64url_decode(client_data["challenge"])
    except (KeyError, TypeError, ValueError):
        raise WebauthnFailed(N_("clientDataJSON is not a WebAuthn client data object.")) from None


def verify_registration(party: Party, credential: dict, challenge: bytes) -> NewCredential:
    try:
        verified = verify_registration_response(credential=credential, expected_challenge=challenge,
                                                expected_rp_id=party.rp_id, expected_origin=party.origins)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise WebauthnFailed(_reason(exc)) from None
    return NewCredential(bytes_to_base64url(verified.credential_id), verified.credential_public_key,
                         verified.sign_count, verified.user_verified, verified.credential_backed_up)


def verify_assertion(party: Party, credential: dict, challenge: bytes, *, public_key: bytes,
                     sign_count: int) -> Assertion:
    """Signature, challenge, origin, RP id and the signature counter (it must grow, unless both are 0)."""
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=party.rp_id,
            expected_origin=party.origins, credential_public_key=public_key,
            credential_current_sign_count=sign_count)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise WebauthnFailed(_reason(exc)) from None
    return Assertion(bytes_to_base64url(verified.credential_id), verified.new_sign_count, verified.user_verified,
                     verified.credential_backed_up)


def _reason(exc: Exception) -> str:
    # The library's messages name what failed (origin, RP id, counter, signature) and hold no secret.
    text = str(exc) if isinstance(exc, WebAuthnException) else ""
    return f"The passkey response could not be verified: {text}" if text else WebauthnFailed.detail
