"""Idempotency keys (CONTRACT §2): the atomic claim, the stored response and when it may be replayed.

Every write here is its own short transaction on its own connection, apart from the request's
session: the claim must be visible to concurrent requests before the work starts, and storing
the response must never commit anything the work left behind.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from gatehouse.database import upsert_insert
from gatehouse.errors import IdempotencyKeyInProgress, IdempotencyKeyReused, TokenRevoked
from gatehouse.extensions import db
from gatehouse.models import IdempotencyKey, Session
from gatehouse.security.tokens import derive_key, keyed_hash
from gatehouse.runtime import sealer, setting

# A response that carries secrets (tokens, tickets) is replayed this long only.
SECRET_REPLAY_WINDOW = timedelta(seconds=60)


def _key() -> bytes:
    """The HMAC key of stored request fingerprints: derived from SECRET_KEY for this use only."""
    return derive_key(setting("SECRET_KEY"), "idempotency-request")


def body_digest(body: bytes) -> str:
    """A keyed fingerprint (HMAC-SHA-256) of a request body's canonical form.

    Bodies hold passwords (sign-in, password change, account deletion, reset): an unkeyed hash
    kept for IDEMPOTENCY_TTL would let whoever reads the table test password guesses at one
    SHA-256 each, around argon2. The canonical form (JSON with sorted keys and no spacing) makes
    the same request with its fields in another order or spacing the same request.
    """
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        canonical = body
    return hmac.new(_key(), canonical, hashlib.sha256).hexdigest()


def refresh_caller(refresh_token: str) -> str:
    """The caller of an unauthenticated request that presents a refresh token: its holder, from any
    address (a phone that changed networks between a lost answer and its retry still replays)."""
    return "refresh:" + keyed_hash(_key(), refresh_token)


@dataclass(frozen=True)
class Attempt:
    """One request that carries an Idempotency-Key."""

    key: str
    caller: str  # "user:<id>" for bearer calls, "refresh:<HMAC>" for a refresh, "addr:<client address>" otherwise
    method: str
    path: str
    body_hash: str
    user_id: str | None = None


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict
    body: bytes


def _insert_claim(attempt: Attempt, now: datetime) -> str | None:
    statement = upsert_insert(IdempotencyKey).values(
        key=attempt.key, caller=attempt.caller, user_id=attempt.user_id, method=attempt.method,
        path=attempt.path, body_hash=attempt.body_hash, state="running", encrypted=False, created_at=now,
        expires_at=now + timedelta(seconds=setting("IDEMPOTENCY_TTL")),
    ).on_conflict_do_nothing(index_elements=["key", "caller"]).returning(IdempotencyKey.id)
    with db.engine.begin() as conn:
        return conn.execute(statement).scalar_one_or_none()


def _session_live(session_id: str, now: datetime) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(select(Session.id).where(
            Session.id == session_id, Session.live_at(now))).first() is not None


def _replay(row, attempt: Attempt, now: datetime) -> StoredResponse:
    if (row.method, row.path, row.body_hash) != (attempt.method, attempt.path, attempt.body_hash):
        raise IdempotencyKeyReused()
    if row.state != "done":
        raise IdempotencyKeyInProgress()
    body = row.response_body or b""
    if row.encrypted:
        if row.session_id is not None and not _session_live(row.session_id, now):
            raise TokenRevoked("The session of this Idempotency-Key's response has been revoked.")
        opened = sealer().open(body) if row.replay_until > now and row.response_body else None
        if opened is None:
            raise IdempotencyKeyReused("The response to this Idempotency-Key carried tokens and is no longer "
                                       "replayed; send the request again with a new key.")
        body = opened
    return StoredResponse(row.response_status, row.response_headers or {}, body)


def begin(attempt: Attempt, now: datetime) -> str | StoredResponse:
    """Claim the key with one atomic insert: the claim's id when this request is to run,
    else the response to replay. 422 idempotency_key_reused for another request under the key,
    409 idempotency_key_in_progress while the first still runs."""
    for _ in range(3):
        claim_id = _insert_claim(attempt, now)
        if claim_id is not None:
            return claim_id
        with db.engine.connect() as conn:
            row = conn.execute(select(IdempotencyKey.__table__).where(
                IdempotencyKey.key == attempt.key, IdempotencyKey.caller == attempt.caller)).first()
        if row is None:  # purged since the insert: claim again
            continue
        if row.expires_at > now:
            return _replay(row, attempt, now)
        with db.engine.begin() as conn:  # expired and not yet purged: the key is free again
            conn.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row.id, IdempotencyKey.expires_at <= now))
    raise IdempotencyKeyInProgress()


def finish(claim_id: str, response: StoredResponse, now: datetime, *, secret: bool,
           session_id: str | None = None, user_id: str | None = None) -> None:
    """Store the response of a claimed request; a secret one sealed and replayable for 60 s only."""
    values = dict(state="done", response_status=response.status, response_headers=response.headers,
                  response_body=sealer().seal(response.body) if secret else response.body, encrypted=secret,
                  session_id=session_id, replay_until=now + SECRET_REPLAY_WINDOW if secret else None)
    if user_id is not None:
        values["user_id"] = user_id
    with db.engine.begin() as conn:
        conn.execute(update(IdempotencyKey).where(IdempotencyKey.id == claim_id).values(**values))


def release(claim_id: str) -> None:
    """Give the key back (the request did not complete: a 5xx, or refused before running)."""
    with db.engine.begin() as conn:
        conn.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim_id))


def purge(now: datetime) -> int:
    """Delete expired keys and drop sealed bodies whose replay window has passed; the number deleted."""
    with db.engine.begin() as conn:
        deleted = conn.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)).rowcount
        conn.execute(update(IdempotencyKey)
                     .where(IdempotencyKey.encrypted.is_(True), IdempotencyKey.replay_until <= now,
                            IdempotencyKey.response_body.is_not(None))
                     .values(response_body=None))
    return deleted
