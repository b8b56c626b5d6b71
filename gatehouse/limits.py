"""The `auth` rate-limit bucket (CONTRACT §2): one moving window of 10 requests a minute per client
address, shared by every view an adapter puts in it (an IPv6 address counts by its /64).

The API puts its endpoints in it by rule (api.limits.AUTH_PATHS), the portal its forms of the same
use cases (portal.pages.AUTH_FORMS): `auth_limited(view)` wraps a view, `sign_in=True` marks a
sign-in, whose refusal also counts as a `rate_limited` sign-in. The client address is
`request.remote_addr`, which ProxyFix corrects from `X-Forwarded-For` only when TRUSTED_PROXIES > 0.
Every response of a limited view carries flask-limiter's `X-RateLimit-Limit`, `-Remaining`, `-Reset`
(epoch) and `-Reset-After` (seconds) headers; a breach is 429 `rate_limited` with `Retry-After`.
`Retry-After` is only ever sent on a 429 (a 429 of the sign-in backoff keeps its own).
"""
from __future__ import annotations

import ipaddress
import time
from functools import wraps
from typing import Callable

from flask import Flask, current_app, g
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address

from gatehouse import metrics
from gatehouse.errors import RateLimited
from gatehouse.extensions import limiter
from gatehouse.web import error_response

AUTH_LIMIT = "10 per minute"
SIGN_IN = "gatehouse.sign_in"


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


def auth_limited(view: Callable, *, sign_in: bool = False) -> Callable:
    """The view in the `auth` bucket; `sign_in`: a refusal also counts as a rate-limited sign-in."""
    limited = auth_bucket(view)
    if not sign_in:
        return limited

    @wraps(view)
    def signing_in(**kwargs):
        g.setdefault(SIGN_IN, True)
        return limited(**kwargs)

    return signing_in


def _exceeded(_: RateLimitExceeded):
    try:
        wait = int(limiter.current_limit.reset_at - time.time())
    except Exception:  # the storage went away between the check and now
        wait = 60
    wait = max(wait, 1)
    metrics.rate_limited.labels("auth").inc()
    if g.get(SIGN_IN):
        metrics.signins.labels("rate_limited").inc()
    response = current_app.make_response(error_response(RateLimited(retry_after=wait)))
    response.headers["Retry-After"] = str(wait)
    return response


def install(app: Flask) -> None:
    """The 429 answer of a breached limit: problem+json (or the portal's page) with Retry-After."""
    app.register_error_handler(RateLimitExceeded, _exceeded)
