"""A software passkey authenticator: P-256 key pairs, `none` attestation, assertions signed with cryptography.

It answers the WebAuthn JSON options the way a browser and an authenticator together would, with
the client data of a chosen origin, so tests can play every part of a ceremony (and lie in each).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ORIGIN = "http://127.0.0.1:8000"
RP_ID = "127.0.0.1"
UP, UV, AT = 0x01, 0x04, 0x40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    rp_id: str
    sign_count: int = 0

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})


@dataclass
class Authenticator:
    """Holds discoverable credentials; `user_verified` says whether it checks a PIN or a fingerprint."""

    origin: str = ORIGIN
    user_verified: bool = True
    credentials: list[Credential] = field(default_factory=list)

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def _flags(self) -> int:
        return UP | (UV if self.user_verified else 0)

    def create(self, options: dict, *, origin: str | None = None, rp_id: str | None = None) -> dict:
        """A RegistrationResponseJSON for PublicKeyCredentialCreationOptionsJSON."""
        rp_id = rp_id or options["rp"]["id"]
        credential = Credential(os.urandom(32), ec.generate_private_key(ec.SECP256R1()),
                                unb64(options["user"]["id"]), rp_id)
        self.credentials.append(credential)
        attested = (len(credential.credential_id).to_bytes(2, "big") + credential.credential_id
                    + credential.cose_key())
        auth_data = (hashlib.sha256(rp_id.encode()).digest() + bytes([self._flags() | AT]) + struct.pack(">I", 0)
                     + bytes(16) + attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin or self.origin)
        return {"id": b64(credential.credential_id), "rawId": b64(credential.credential_id), "type": "public-key",
                "response": {"clientDataJSON": b64(client_data), "attestationObject": b64(attestation),
                             "transports": ["internal"]},
                "authenticatorAttachment": "platform", "clientExtensionResults": {}}

    def get(self, options: dict, *, origin: str | None = None, rp_id: str | None = None,
            credential: Credential | None = None, sign_count: int | None = None) -> dict:
        """An AuthenticationResponseJSON for PublicKeyCredentialRequestOptionsJSON."""
        credential = credential or self.credentials[-1]
        credential.sign_count = credential.sign_count + 1 if sign_count is None else sign_count
        rp_id = rp_id or options.get("rpId") or credential.rp_id
        auth_data = (hashlib.sha256(rp_id.encode()).digest() + bytes([self._flags()])
                     + struct.pack(">I", credential.sign_count))
        client_data = self._client_data("webauthn.get", options["challenge"], origin or self.origin)
        signature = credential.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": b64(credential.credential_id), "rawId": b64(credential.credential_id), "type": "public-key",
                "response": {"clientDataJSON": b64(client_data), "authenticatorData": b64(auth_data),
                             "signature": b64(signature), "userHandle": b64(credential.user_handle)},
                "authenticatorAttachment": "platform", "clientExtensionResults": {}}
