"""The application's configured collaborators (settings, hasher, sealer, HMAC key), as the core reads them."""
from __future__ import annotations

from flask import current_app

from gatehouse.security.passwords import Hasher
from gatehouse.security.tokens import Sealer


def setting(name: str):
    return current_app.config[name]


def hasher() -> Hasher:
    return current_app.extensions["gatehouse.hasher"]


def sealer() -> Sealer:
    return current_app.extensions["gatehouse.sealer"]


def hmac_key() -> bytes:
    return current_app.extensions["gatehouse.hmac_key"]
