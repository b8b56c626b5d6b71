"""Second-factor secrets without storage: TOTP (RFC 6238) steps and codes, QR codes, recovery codes."""
from __future__ import annotations

import secrets
from datetime import datetime

import pyotp
import segno

from gatehouse.security.tokens import same

TOTP_STEP = 30  # seconds (RFC 6238 default); SHA-1 and 6 digits, as every authenticator app expects
TOTP_SKEW = 1  # steps accepted either side of now
# Recovery codes: 10 characters of an alphabet without look-alikes (0/o, 1/l/i), shown as xxxxx-xxxxx:
# 31**10, about 49.5 bits each.
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
RECOVERY_LENGTH = 10
RECOVERY_COUNT = 10


def new_totp_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits, RFC 4226's recommended length


def totp_uri(secret: str, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(data: str) -> str:
    """An inline <svg> of the QR code: no image file, no style attribute, so the page's CSP holds."""
    return segno.make(data, error="m").svg_inline(scale=4, dark="#000", light="#fff", title="QR code")


def step_of(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_STEP


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The step (now, or one either side) whose code `code` is; compared in constant time."""
    totp = pyotp.TOTP(secret)
    current = step_of(now)
    found = None
    for step in range(current - TOTP_SKEW, current + TOTP_SKEW + 1):
        if same(totp.at(step * TOTP_STEP), code):
            found = step
    return found


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_recovery_code(code: str) -> str | None:
    """What was typed, without case, blanks or hyphens; None when it cannot be a recovery code."""
    raw = "".join(ch for ch in code.lower() if ch not in " -")
    if len(raw) != RECOVERY_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in raw):
        return None
    return raw


def looks_like_totp(code: str) -> bool:
    return len(code) == 6 and code.isascii() and code.isdigit()
