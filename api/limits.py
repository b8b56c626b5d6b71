"""Which API endpoints are in the `auth` bucket (gatehouse.limits): `api.routing.endpoint` puts each
endpoint whose rule is listed here in it, so an endpoint added later joins it by being listed."""
from __future__ import annotations

from typing import Callable

from gatehouse.limits import auth_limited

AUTH_PATHS = frozenset({"/auth/login", "/auth/register", "/auth/forgot-password", "/auth/reset-password",
                        "/auth/mfa/verify", "/auth/passkey/login", "/auth/not-me", "/auth/email/revert"})
SIGN_IN_PATHS = frozenset({"/auth/login"})


def limited(rule: str, view: Callable) -> Callable:
    """The view with the rate limits its rule is subject to."""
    return auth_limited(view, sign_in=rule in SIGN_IN_PATHS) if rule in AUTH_PATHS else view
