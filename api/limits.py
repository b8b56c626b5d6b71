"""The `auth` rate-limit bucket (CONTRACT §2): one moving window of 10 requests a minute per client
address, shared by every path in AUTH_PATHS (an IPv6 address counts by its /64).

`api.routing.endpoint` puts the bucket on each endpoint whose rule is listed here, so an endpoint
added later joins it by being listed; the portal's forms of the same four use cases (AUTH_FORMS,
their POSTs) join it the same way. The client address is `request.remote_addr`, which ProxyFix
corrects from `X-Forwarded-For` only when TRUSTED_PROXIES > 0. Every response of a listed path
carries flask-limiter's `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch) and `-Reset-After`
(seconds) headers; a breach is 429 `rate_limited` with `Retry-After`. `Retry-After` is only ever
sent on a 429 (a 429 of the sign-in backoff keeps its own).
"""
from __future__ import annotations

import ipaddress
import time
from typing import Callable

from flask import Flask, current_app, request
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address

from gatehouse import metrics
from gatehouse.errors import RateLimited
from gatehouse.extensions import limiter
from gatehouse.web import error_response

AUTH_LIMIT = "10 per minute"
AUTH_PATHS = frozenset({"/auth/login", "/auth/register", "/auth/forgot-password", "/auth/reset-password",
                        "/auth/mfa/verify", "/auth/passkey/login", "/auth/not-me", "/auth/email/revert"})
AUTH_FORMS = frozenset({"/login", "/register", "/forgot-password", "/reset-password", "/not-me",
                        "/account/email/revert"})
SIGN_IN_PATHS = frozenset({"/auth/login", "/login"})



def client_network() -> str:
    """The bucket of a client address: an IPv4 address itself, an IPv6 address its /64.

    One IPv6 subscriber or host is routinely given a whole /64, so counting single IPv6 addresses
    would give one client 2^64 buckets. An IPv4-mapped IPv6 address counts as its IPv4 address.
    """
    address = get_remote_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


auth_bucket = limiter.shared_limit(AUTH_LIMIT, scope="auth", key_func=client_network)


def limited(rule: str, view: Callable) -> Callable:
    """The view with the rate limits its rule is subject to."""
    return auth_bucket(view) if rule in AUTH_PATHS or rule in AUTH_FORMS else view


def _exceeded(_: RateLimitExceeded):
    try:
        wait = int(limiter.current_limit.reset_at - time.time())
    except Exception:  # the storage went away between the check and now
        wait = 60
    wait = max(wait, 1)
    metrics.rate_limited.labels("auth").inc()
    if request.path in SIGN_IN_PATHS:
        metrics.signins.labels("rate_limited").inc()
    response = current_app.make_response(error_response(RateLimited(retry_after=wait)))
    response.headers["Retry-After"] = str(wait)
    return response


def install(app: Flask) -> None:
    """The 429 answer of a breached limit: problem+json (or the portal's page) with Retry-After."""
    app.register_error_handler(RateLimitExceeded, _exceeded)
