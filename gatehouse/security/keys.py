"""Asymmetric access-token signing keys (CONTRACT §5): load one from PEM, generate one, publish its JWK."""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ALGORITHMS = ("ES256", "EdDSA", "RS256")
RSA_MIN_BITS = 2048
RSA_GENERATED_BITS = 3072
# RFC 7638 §3.2: the members of each key type that its thumbprint covers.
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}


class UnusableKey(ValueError):
    """A PEM that cannot sign access tokens; the message says why."""


@dataclass(frozen=True)
class SigningKey:
    algorithm: str
    kid: str
    private_key: object
    public_key: object

    def public_jwk(self) -> dict:
        return {**_jwk(self.public_key), "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def _jwk(public_key) -> dict:
    """The key's required JWK members only (no key_ops: `use` says what it is for)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        full = ECAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        full = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        full = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    return {name: full[name] for name in THUMBPRINT_MEMBERS[full["kty"]]}


def thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK SHA-256 thumbprint, base64url without padding."""
    digest = hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def algorithm_of(private_key) -> str:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if isinstance(private_key.curve, ec.SECP256R1):
            return "ES256"
        raise UnusableKey(f"an EC key must be on P-256 for ES256 (got {private_key.curve.name})")
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size >= RSA_MIN_BITS:
            return "RS256"
        raise UnusableKey(f"an RSA key must have at least {RSA_MIN_BITS} bits (got {private_key.key_size})")
    raise UnusableKey("the key must be EC P-256 (ES256), Ed25519 (EdDSA) or RSA (RS256)")


def load(pem: str) -> SigningKey:
    """The signing key in an unencrypted PEM private key; literal "\\n" escapes (env files) are newlines."""
    text = pem.strip().replace("\\n", "\n")
    try:
        private_key = serialization.load_pem_private_key(text.encode(), password=None)
    except TypeError:
        raise UnusableKey("the private key must not be encrypted with a password") from None
    except ValueError:
        raise UnusableKey("not a PEM private key") from None
    algorithm = algorithm_of(private_key)
    public_key = private_key.public_key()
    return SigningKey(algorithm, thumbprint(_jwk(public_key)), private_key, public_key)


def generate(algorithm: str) -> str:
    """A new private key for `algorithm`, as an unencrypted PKCS #8 PEM."""
    if algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_GENERATED_BITS)
    else:
        raise UnusableKey(f"the algorithm must be one of {', '.join(ALGORITHMS)}")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
