"""Bearer authentication of JSON requests."""
from __future__ import annotations

from flask import g, request

from gatehouse.clock import now
from gatehouse.errors import TokenInvalid
from gatehouse.services import sessions, stepup


def bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenInvalid("An access token is required: Authorization: Bearer <accessToken>.")
    return token


def authenticate() -> sessions.Caller:
    return sessions.authenticate(bearer_token(), now())


def caller() -> sessions.Caller:
    return g.auth


def require_fresh() -> None:
    stepup.require_fresh(g.auth, now())
