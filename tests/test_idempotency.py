"""Idempotency-Key on every write: claim, replay, refusals, sealed token responses, purge."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select, text

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import IdempotencyKey, User
from gatehouse.services import idempotency
from gatehouse.services.idempotency import Attempt
from tests.actions import PASSWORD, bearer, problem
from tests.concurrency import at_once
from tests.conftest import POSTGRES_LEG

KEY = {"Idempotency-Key": "key-1"}




def keys(app) -> list[IdempotencyKey]:
    with app.app_context():
        rows = db.session.scalars(select(IdempotencyKey)).all()
        db.session.expunge_all()
        return rows


def count_users(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def register(client, email="ann@example.com", headers=KEY, **extra):
    return client.post("/auth/register", json={"email": email, "password": PASSWORD, **extra}, headers=headers)


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "del\x7f"])
def test_a_key_must_be_1_to_255_printable_characters(app, client, key):
    body = problem(register(client, headers={"Idempotency-Key": key}), 422, "validation_failed")
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert keys(app) == [] and count_users(app) == 0


def test_a_key_of_255_characters_is_accepted(app, client):
    assert register(client, headers={"Idempotency-Key": "k" * 255}).status_code == 201
    assert [row.key for row in keys(app)] == ["k" * 255]


def test_a_retry_replays_the_stored_response(app, client, api):
    api.register("ann@example.com")
    first = register(client)
    problem(first, 409, "email_taken")
    again = register(client)
    problem(again, 409, "email_taken")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    assert "Idempotent-Replayed" not in first.headers
    [row] = keys(app)
    assert (row.state, row.response_status, row.encrypted, row.method, row.path) == (
        "done", 409, False, "POST", "/auth/register")
    assert row.caller == "addr:127.0.0.1" and row.user_id is None


def test_the_work_runs_once(app, client):
    first = register(client)
    again = register(client)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert count_users(app) == 1


def test_the_same_key_with_another_body_or_path_is_refused(app, client):
    assert register(client).status_code == 201
    problem(register(client, email="bob@example.com"), 422, "idempotency_key_reused")
    problem(client.post("/auth/login", json={"email": "ann@example.com", "password": PASSWORD}, headers=KEY),
            422, "idempotency_key_reused")
    assert count_users(app) == 1


def test_keys_are_per_caller(app, client):
    assert register(client).status_code == 201
    other = client.post("/auth/register", json={"email": "bob@example.com", "password": PASSWORD}, headers=KEY,
                        environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert sorted(row.caller for row in keys(app)) == ["addr:10.0.0.9", "addr:127.0.0.1"]


def test_bearer_calls_are_keyed_by_the_user(app, client, api):
    result = api.register()
    token = result["tokens"]["accessToken"]
    first = client.post("/auth/logout", json={"everything": True}, headers={**KEY, **bearer(token)})
    problem(first, 422, "validation_failed")
    again = client.post("/auth/logout", json={"everything": True}, headers={**KEY, **bearer(token)})
    problem(again, 422, "validation_failed")
    assert again.headers["Idempotent-Replayed"] == "true"
    [row] = keys(app)
    assert row.caller == f"user:{result['user']['id']}" and row.user_id == result["user"]["id"]


def test_a_request_still_running_under_the_key_is_409(app, client):
    body = b'{"email": "ann@example.com", "password": "' + PASSWORD.encode() + b'"}'
    with app.test_request_context():
        claim = idempotency.begin(Attempt(key="key-1", caller="addr:127.0.0.1", method="POST",
                                          path="/auth/register", body_hash=idempotency.body_digest(body)), now())
    assert isinstance(claim, str)
    response = client.post("/auth/register", data=body, content_type="application/json", headers=KEY)
    problem(response, 409, "idempotency_key_in_progress")
    assert count_users(app) == 0


def test_429_responses_are_not_stored(make_app):
    app = make_app(RATELIMIT_ENABLED="1", SIGNIN_FREE_FAILURES="1", SIGNIN_LOCKOUT_FAILURES="5")
    client = app.test_client()
    wrong = {"email": "ann@example.com", "password": "wrong password here"}
    problem(client.post("/auth/login", json=wrong), 401, "invalid_credentials")
    problem(client.post("/auth/login", json=wrong, headers=KEY), 429, "rate_limited")
    assert keys(app) == []


def test_5xx_responses_are_not_stored_and_the_key_can_be_used_again(app, client):
    with app.app_context():
        db.session.execute(text("ALTER TABLE subscriptions RENAME TO subscriptions_away"))
        db.session.commit()
    try:
        failed = register(client)
        # SQLite reports a missing table as an OperationalError (503), PostgreSQL as a programming error (500).
        assert failed.status_code in (500, 503) and failed.get_json()["code"] in ("internal_error",
                                                                                 "service_unavailable")
        assert keys(app) == []
    finally:
        with app.app_context():
            db.session.execute(text("ALTER TABLE subscriptions_away RENAME TO subscriptions"))
            db.session.commit()
    retry = register(client)
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
    assert count_users(app) == 1


def test_token_responses_are_stored_encrypted(app, client):
    response = register(client)
    tokens = response.get_json()["tokens"]
    [row] = keys(app)
    assert row.encrypted and row.session_id == response.get_json()["session"]["id"]
    assert row.user_id == response.get_json()["user"]["id"]
    with app.app_context():
        raw = db.session.execute(text("SELECT * FROM idempotency_keys")).mappings().one()
    dump = repr(dict(raw)).encode() + bytes(raw["response_body"])
    for secret in (tokens["accessToken"], tokens["refreshToken"]):
        assert secret.encode() not in dump
    # Fernet ciphertext (base64url) may contain any three letters by chance; no plain JSON may show.
    assert b"accessToken" not in dump and not bytes(raw["response_body"]).startswith(b"{")


def test_token_responses_are_replayed_for_60_seconds_only(app, client):
    first = register(client)
    with time_machine.travel(now() + timedelta(seconds=59), tick=False):
        again = register(client)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.get_json() == first.get_json()
    with time_machine.travel(now() + timedelta(seconds=61), tick=False):
        problem(register(client), 422, "idempotency_key_reused")
    assert count_users(app) == 1


def test_token_responses_are_never_replayed_once_their_session_is_revoked(app, client, api):
    api.register("ann@example.com")
    login = {"email": "ann@example.com", "password": PASSWORD}
    first = client.post("/auth/login", json=login, headers=KEY)
    assert first.status_code == 200
    assert client.post("/auth/logout", headers=bearer(first.get_json()["tokens"]["accessToken"])).status_code == 204
    problem(client.post("/auth/login", json=login, headers=KEY), 401, "token_revoked")


def test_expired_keys_are_purged_and_free_again(app, client, runner):
    assert register(client).status_code == 201
    later = now() + timedelta(seconds=61)
    with time_machine.travel(later, tick=False):
        assert runner.invoke(args=["idempotency", "purge"]).exit_code == 0
    [row] = keys(app)
    assert row.response_body is None  # the sealed tokens are gone once they can no longer be replayed
    with time_machine.travel(now() + timedelta(seconds=86401), tick=False):
        result = runner.invoke(args=["idempotency", "purge"])
        assert "purged 1 idempotency keys" in result.output
        assert keys(app) == []
        fresh = register(client, email="bob@example.com")
        assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers


def test_an_expired_key_not_yet_purged_is_free_again(app, client):
    assert register(client).status_code == 201
    with time_machine.travel(now() + timedelta(seconds=86401), tick=False):
        fresh = register(client, email="bob@example.com")
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
    assert [row.body_hash for row in keys(app)] != [] and count_users(app) == 2


def test_reads_ignore_the_header(app, client, api):
    token = api.register()["tokens"]["accessToken"]
    for _ in range(2):
        response = client.get("/auth/me", headers={**KEY, **bearer(token)})
        assert response.status_code == 200 and "Idempotent-Replayed" not in response.headers
    assert keys(app) == []


@pytest.mark.skipif(not POSTGRES_LEG, reason="needs PostgreSQL")
@pytest.mark.parametrize("leg", ["postgres"], indirect=True)
def test_ten_concurrent_requests_with_one_key_run_the_work_once(app):
    def attempt(client):
        response = register(client)
        return response.status_code, response.headers.get("Idempotent-Replayed"), response.get_json().get("code")

    results = at_once(app, 10, attempt)
    assert len(results) == 10
    ran = [r for r in results if r == (201, None, None)]
    others = [r for r in results if r != (201, None, None)]
    assert len(ran) == 1, results
    assert all(r in {(409, None, "idempotency_key_in_progress"), (201, "true", None)} for r in others), results
    assert count_users(app) == 1
    [row] = keys(app)
    assert row.state == "done"


def test_the_outbox_worker_purges_expired_keys(app, client, runner):
    assert register(client).status_code == 201
    with time_machine.travel(now() + timedelta(seconds=86401), tick=False):
        result = runner.invoke(args=["outbox", "work", "--once"])
        assert result.exit_code == 0 and "purged 1 idempotency keys" in result.output
        assert keys(app) == []
