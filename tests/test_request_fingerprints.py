"""What the idempotency table keeps of a request: a keyed fingerprint of its canonical body (never
an unsalted hash of a password), and whose key it is (a refresh token's holder from any address)."""
from __future__ import annotations

import hashlib
import hmac
import json

from sqlalchemy import select

from gatehouse.extensions import db
from gatehouse.models import IdempotencyKey, Session
from gatehouse.security.tokens import derive_key
from tests.actions import PASSWORD, problem


def rows(app) -> list[IdempotencyKey]:
    with app.app_context():
        found = db.session.scalars(select(IdempotencyKey).order_by(IdempotencyKey.created_at)).all()
        db.session.expunge_all()
        return found


def test_stored_fingerprints_are_keyed_and_never_a_plain_hash_of_the_body(app, api, config):
    api.register(email="ann@example.com")
    raw = json.dumps({"password": PASSWORD, "email": "ann@example.com"}).encode()
    response = api.client.post("/auth/login", data=raw, content_type="application/json",
                               headers={"Idempotency-Key": "login-1"})
    assert response.status_code == 200
    [row] = rows(app)
    canonical = json.dumps({"email": "ann@example.com", "password": PASSWORD}, separators=(",", ":")).encode()
    # Neither the raw body nor its canonical form, hashed without a key: a guess costs an HMAC under
    # a key only SECRET_KEY yields.
    assert row.body_hash not in {hashlib.sha256(raw).hexdigest(), hashlib.sha256(canonical).hexdigest()}
    key = derive_key(config["SECRET_KEY"], "idempotency-request")
    assert row.body_hash == hmac.new(key, canonical, hashlib.sha256).hexdigest()
    other = derive_key("another-secret-key-0123456789-abcdefghij", "idempotency-request")
    assert row.body_hash != hmac.new(other, canonical, hashlib.sha256).hexdigest()
    assert PASSWORD not in repr([value for value in row.__dict__.values()])


def test_the_same_body_in_another_order_or_spacing_is_the_same_request(app, api):
    api.register(email="ann@example.com")
    first = api.client.post("/auth/login", data=b'{"email":"ann@example.com","password":"' + PASSWORD.encode() + b'"}',
                            content_type="application/json", headers={"Idempotency-Key": "same"})
    again = api.client.post("/auth/login",
                            data=b'{ "password" : "' + PASSWORD.encode() + b'",\n  "email": "ann@example.com" }',
                            content_type="application/json", headers={"Idempotency-Key": "same"})
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_data() == first.get_data()
    other = api.client.post("/auth/login", json={"email": "ann@example.com", "password": PASSWORD + "!"},
                            headers={"Idempotency-Key": "same"})
    problem(other, 422, "idempotency_key_reused")


def refresh(client, token: str, key: str, address: str):
    return client.post("/auth/refresh", json={"refreshToken": token}, headers={"Idempotency-Key": key},
                       environ_base={"REMOTE_ADDR": address})


def test_a_refresh_retried_from_another_address_replays_instead_of_tripping_reuse(app, api):
    signed_in = api.register(email="phone@example.com")
    token = signed_in["tokens"]["refreshToken"]
    first = refresh(api.client, token, "rotate-1", "192.0.2.10")  # the answer is lost on the way
    assert first.status_code == 200
    again = refresh(api.client, token, "rotate-1", "198.51.100.7")  # the phone is on another network now
    assert again.status_code == 200, again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["tokens"] == first.get_json()["tokens"]
    with app.app_context():
        session = db.session.get(Session, signed_in["session"]["id"])
        assert session.revoked_at is None  # no reuse detected
    [row] = rows(app)
    assert row.caller.startswith("refresh:") and token not in row.caller
    assert refresh(api.client, again.get_json()["tokens"]["refreshToken"], "rotate-2", "203.0.113.1").status_code == 200


def test_two_refresh_tokens_under_one_key_are_two_callers(api):
    first = api.register(email="one@example.com")["tokens"]["refreshToken"]
    second = api.register(email="two@example.com")["tokens"]["refreshToken"]
    assert refresh(api.client, first, "same-key", "192.0.2.1").status_code == 200
    response = refresh(api.client, second, "same-key", "192.0.2.1")
    assert response.status_code == 200 and "Idempotent-Replayed" not in response.headers
