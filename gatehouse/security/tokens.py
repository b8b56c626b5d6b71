"""Secrets derived from SECRET_KEY, opaque refresh tokens, one-time codes and at-rest encryption."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(secret_key: str, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose only (HKDF-SHA-256), so no two uses ever share key material."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"gatehouse:{purpose}".encode()).derive(secret_key.encode())


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def new_ticket() -> str:
    return secrets.token_urlsafe(32)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA-256, for short secrets (codes) and identifiers that must not be stored as given."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Sealer:
    """Authenticated encryption (Fernet) for data at rest that may hold a secret."""

    def __init__(self, key: bytes):
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, token: bytes) -> bytes | None:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            return None
