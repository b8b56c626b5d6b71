"""Idempotency-Key on every POST, PATCH and DELETE (CONTRACT §2), one mechanism for all endpoints.

`api.routing.endpoint` runs each view through `idempotent`, after authentication so that the
caller is known. The same key, caller, method, path and body replays the stored response with
`Idempotent-Replayed: true`. Responses that were not really answered (429, 5xx) are not stored.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

import jwt
from flask import Response, current_app, g, request

from gatehouse.clock import now
from gatehouse.errors import field_error
from gatehouse.extensions import db
from gatehouse.services import idempotency
from gatehouse.services.idempotency import Attempt, StoredResponse

HEADER = "Idempotency-Key"
WRITES = frozenset({"POST", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 255
CALLER_LENGTH = 80  # idempotency_keys.caller
KEPT_HEADERS = ("Content-Type", "Location", "ETag", "Last-Modified")
# Top-level response fields that hold credentials: such a response is sealed and replayed briefly.
# mfaToken comes in the mfa_required problem; secret (with otpauthUri and qrSvg) and recoveryCodes
# are a second factor's own secrets.
SECRET_FIELDS = ("tokens", "ticket", "mfaToken", "secret", "recoveryCodes")


def _caller(body: bytes) -> str:
    """Whose key this is: the bearer's user, else the holder of the refresh token the body
    presents, else the client address."""
    who = g.get("auth")
    if who:
        return f"user:{who.user_id}"
    try:
        presented = json.loads(body).get("refreshToken")
    except (ValueError, AttributeError, RecursionError):
        presented = None
    if isinstance(presented, str) and presented:
        return idempotency.refresh_caller(presented)
    caller = f"addr:{request.remote_addr}"
    if len(caller) > CALLER_LENGTH:  # a forwarded address is whatever the trusted proxy passed on
        caller = "addr:sha256:" + hashlib.sha256(caller.encode()).hexdigest()
    return caller


def _attempt(key: str) -> Attempt:
    if not (1 <= len(key) <= MAX_KEY_LENGTH and key.isprintable()):
        raise field_error(HEADER, f"must be 1-{MAX_KEY_LENGTH} printable characters")
    who = g.get("auth")
    body = request.get_data(cache=True)
    return Attempt(key=key, caller=_caller(body), method=request.method, path=request.path,
                   body_hash=idempotency.body_digest(body), user_id=who.user_id if who else None)


def _answer(run: Callable[[], Response]) -> Response:
    """The view's response, or the error response it raised (as Flask would have made it)."""
    try:
        return current_app.make_response(run())
    except Exception as exc:
        db.session.rollback()  # whatever the failed work left uncommitted is not part of the answer
        return current_app.make_response(current_app.handle_user_exception(exc))


def _secret_owner(response: Response) -> tuple[str | None, str | None] | None:
    """(session id, user id) behind a response that carries credentials; None for any other response."""
    if response.mimetype not in ("application/json", "application/problem+json"):
        return None
    try:
        data = json.loads(response.get_data())
    except ValueError:
        return None
    if not isinstance(data, dict) or not any(name in data for name in SECRET_FIELDS):
        return None
    access_token = (data.get("tokens") or {}).get("accessToken")
    if access_token:
        # Minted by this very request: its claims name the session and user it belongs to.
        claims = jwt.decode(access_token, options={"verify_signature": False})
        return claims.get("sid"), claims.get("sub")
    who = g.get("auth")
    return (who.session_id, who.user_id) if who else (None, None)


def _replayed(stored: StoredResponse) -> Response:
    response = Response(stored.body, status=stored.status, headers=stored.headers)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotent(run: Callable[[], Response]) -> Response:
    key = request.headers.get(HEADER)
    if request.method not in WRITES or key is None:
        return run()
    attempt = _attempt(key)
    outcome = idempotency.begin(attempt, now())
    if isinstance(outcome, StoredResponse):
        return _replayed(outcome)
    claim_id = outcome
    try:
        response = _answer(run)
    except BaseException:
        idempotency.release(claim_id)
        raise
    if response.status_code == 429 or response.status_code >= 500:
        idempotency.release(claim_id)
        return response
    owner = _secret_owner(response)
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    stored = StoredResponse(response.status_code, headers, response.get_data())
    session_id, user_id = owner or (None, attempt.user_id)
    idempotency.finish(claim_id, stored, now(), secret=owner is not None, session_id=session_id, user_id=user_id)
    return response
