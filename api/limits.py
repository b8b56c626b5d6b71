"""The `auth` rate-limit bucket (CONTRACT §2): one moving window of 10 requests a minute per client
address, shared by every path in AUTH_PATHS.

`api.routing.endpoint` puts the bucket on each endpoint whose rule is listed here, so an endpoint
added later joins it by being listed. The client address is `request.remote_addr`, which ProxyFix
corrects from `X-Forwarded-For` only when TRUSTED_PROXIES > 0. A breach is 429 `rate_limited`
(see gatehouse.web) with `Retry-After` and flask-limiter's `X-RateLimit-*` headers.
"""
from __future__ import annotations

from typing import Callable

from flask_limiter.util import get_remote_address

from gatehouse.extensions import limiter

AUTH_LIMIT = "10 per minute"
AUTH_PATHS = frozenset({"/auth/login", "/auth/register", "/auth/forgot-password", "/auth/reset-password"})

auth_bucket = limiter.shared_limit(AUTH_LIMIT, scope="auth", key_func=get_remote_address)


def limited(rule: str, view: Callable) -> Callable:
    """The view with the rate limits its rule is subject to."""
    return auth_bucket(view) if rule in AUTH_PATHS else view
