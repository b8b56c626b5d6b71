"""The security timeline (CONTRACT §11): for every kind, the action writes exactly one row of it with
its session and address, a failed attempt writes none; the listing is the caller's own, newest first,
paginated; the admin's variant; retention by the housekeeping."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from gatehouse.extensions import db
from gatehouse.models import SecurityEvent
from gatehouse.services import housekeeping
from tests.actions import PASSWORD, problem
from tests.authenticator import Authenticator
from tests.concurrency import at_once
from tests.mfa import code, password_step, verify
from tests.smtp import deliver, last_code
from tests.test_admin import set_role

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)
NEW_PASSWORD = "a brand new passphrase 42"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


pytestmark = pytest.mark.mail


@pytest.fixture
def carol(api, clock):
    body = api.register(email="carol@example.com")
    return {"id": body["user"]["id"], "token": body["tokens"]["accessToken"], "session": body["session"]["id"],
            "refresh": body["tokens"]["refreshToken"]}


@pytest.fixture
def admin(app, api, clock):
    body = api.register(email="root@example.com")
    set_role(app, body["user"]["id"], "admin")
    return api.login(email="root@example.com")["tokens"]["accessToken"]


def rows(app, user_id: str, kind: str | None = None) -> list[SecurityEvent]:
    with app.app_context():
        statement = select(SecurityEvent).where(SecurityEvent.user_id == user_id)
        if kind is not None:
            statement = statement.where(SecurityEvent.kind == kind)
        return db.session.scalars(statement).unique().all()


def one(app, user_id: str, kind: str) -> SecurityEvent:
    found = rows(app, user_id, kind)
    assert len(found) == 1, [(e.kind, e.detail) for e in rows(app, user_id)]
    return found[0]


def test_signed_in_and_sign_in_failed(app, api, carol):
    problem(api.client.post("/auth/login", json={"email": "carol@example.com", "password": "wrong " * 3},
                            headers={"User-Agent": UA}), 401, "invalid_credentials")
    failed = one(app, carol["id"], "sign_in_failed")
    assert failed.ip_address == "127.0.0.1" and failed.user_agent == UA and failed.session_id is None
    assert failed.detail == {"reason": "wrong_password"}
    assert len(rows(app, carol["id"], "signed_in")) == 1  # registration's only: a failure signs nobody in

    response = api.client.post("/auth/login", json={"email": "carol@example.com", "password": PASSWORD},
                               headers={"User-Agent": UA})
    session_id = response.get_json()["session"]["id"]
    signed_in = [e for e in rows(app, carol["id"], "signed_in") if e.session_id == session_id]
    assert len(signed_in) == 1 and signed_in[0].user_agent == UA and signed_in[0].detail["methods"] == ["pwd"]
    assert len(rows(app, carol["id"], "sign_in_failed")) == 1


def test_an_unknown_account_leaves_no_row(app, api, carol):
    before = len(rows(app, carol["id"]))
    api.login(email="nobody@example.com", expect=401)
    with app.app_context():
        assert len(db.session.scalars(select(SecurityEvent)).all()) == before


def test_signed_out(app, api, carol):
    problem(api.post("/auth/logout", {}, token="not-a-token"), 401, "token_invalid")
    assert rows(app, carol["id"], "signed_out") == []
    assert api.post("/auth/logout", {}, token=carol["token"]).status_code == 204
    assert one(app, carol["id"], "signed_out").session_id == carol["session"]


def test_session_revoked(app, api, carol):
    other = api.login(email="carol@example.com")["session"]["id"]
    problem(api.delete("/users/me/sessions/00000000-0000-0000-0000-000000000000", token=carol["token"]),
            404, "not_found")
    assert rows(app, carol["id"], "session_revoked") == []
    assert api.delete(f"/users/me/sessions/{other}", token=carol["token"]).status_code == 204
    assert one(app, carol["id"], "session_revoked").session_id == other
    problem(api.delete(f"/users/me/sessions/{other}", token=carol["token"]), 404, "not_found")  # once only
    assert len(rows(app, carol["id"], "session_revoked")) == 1


def test_refresh_token_reused(app, api, carol):
    assert api.post("/auth/refresh", {"refreshToken": carol["refresh"]}).status_code == 200
    assert rows(app, carol["id"], "refresh_token_reused") == []
    problem(api.post("/auth/refresh", {"refreshToken": carol["refresh"]}), 401, "refresh_token_reused")
    assert one(app, carol["id"], "refresh_token_reused").session_id == carol["session"]


def test_password_changed(app, api, carol):
    problem(api.post("/users/me/password", {"currentPassword": "not the password", "newPassword": NEW_PASSWORD},
                     token=carol["token"]), 401, "invalid_credentials")
    assert rows(app, carol["id"], "password_changed") == []
    assert api.post("/users/me/password", {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
                    token=carol["token"]).status_code == 200
    assert one(app, carol["id"], "password_changed").session_id == carol["session"]


def test_password_reset(app, api, carol, smtp_sink):
    api.post("/auth/forgot-password", {"email": "carol@example.com"})
    deliver(app)
    right = last_code(smtp_sink, "carol@example.com", "Reset your Gatehouse password")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    body = {"email": "carol@example.com", "newPassword": NEW_PASSWORD}
    problem(api.post("/auth/reset-password", {**body, "code": wrong}), 400, "invalid_code")
    assert rows(app, carol["id"], "password_reset") == []
    assert api.post("/auth/reset-password", {**body, "code": right}).status_code == 200
    assert one(app, carol["id"], "password_reset").ip_address == "127.0.0.1"


def test_email_revert_with_a_bad_token_writes_nothing(app, api, carol):
    problem(api.post("/auth/email/revert", {"token": "x" * 43}), 400, "invalid_code")
    assert rows(app, carol["id"], "email_reverted") == []


def test_mfa_enabled_disabled_codes_regenerated_and_recovery_code_used(app, api, carol, clock):
    started = api.post("/users/me/mfa/totp", token=carol["token"]).get_json()
    problem(api.post("/users/me/mfa/totp/confirm", {"code": "000000" if code(started["secret"], T0) != "000000"
                                                    else "111111"}, token=carol["token"]), 400, "invalid_mfa_code")
    assert rows(app, carol["id"], "mfa_enabled") == []
    confirmed = api.post("/users/me/mfa/totp/confirm", {"code": code(started["secret"], T0)}, token=carol["token"])
    recovery = confirmed.get_json()["recoveryCodes"]
    assert one(app, carol["id"], "mfa_enabled").detail == {"factor": "totp"}

    assert api.post("/users/me/mfa/recovery-codes", token=carol["token"]).status_code == 200
    one(app, carol["id"], "recovery_codes_regenerated")
    recovery = api.post("/users/me/mfa/recovery-codes", token=carol["token"]).get_json()["recoveryCodes"]

    step = password_step(api, "carol@example.com")
    problem(verify(api, step["mfaToken"], code="AAAA-BBBB-CCCC"), 400, "invalid_mfa_code")
    assert one(app, carol["id"], "sign_in_failed").detail == {"reason": "wrong_second_factor"}
    assert rows(app, carol["id"], "recovery_code_used") == []
    signed = verify(api, step["mfaToken"], code=recovery[0]).get_json()
    used = one(app, carol["id"], "recovery_code_used")
    assert used.session_id == signed["session"]["id"] and used.detail == {"left": 9}

    token = signed["tokens"]["accessToken"]
    assert api.delete("/users/me/mfa/totp", token=token).status_code == 204
    assert one(app, carol["id"], "mfa_disabled").session_id == signed["session"]["id"]
    problem(api.delete("/users/me/mfa/totp", token=token), 404, "not_found")
    assert len(rows(app, carol["id"], "mfa_disabled")) == 1


def test_passkey_added_and_removed(app, api, carol):
    authenticator = Authenticator()
    options = api.post("/users/me/passkeys/options", token=carol["token"]).get_json()["options"]
    credential = authenticator.create(options)
    problem(api.post("/users/me/passkeys", {"credential": authenticator.create(options, origin="https://evil.test"),
                                            "name": "Evil"}, carol["token"]), 400, "webauthn_failed")
    assert rows(app, carol["id"], "passkey_added") == []
    options = api.post("/users/me/passkeys/options", token=carol["token"]).get_json()["options"]
    credential = authenticator.create(options)
    passkey = api.post("/users/me/passkeys", {"credential": credential, "name": "Laptop"}, carol["token"]).get_json()
    added = one(app, carol["id"], "passkey_added")
    assert added.detail == {"passkeyId": passkey["passkey"]["id"], "name": "Laptop"}
    problem(api.delete("/users/me/passkeys/00000000-0000-0000-0000-000000000000", token=carol["token"]),
            404, "not_found")
    assert rows(app, carol["id"], "passkey_removed") == []
    assert api.delete(f"/users/me/passkeys/{passkey['passkey']['id']}", token=carol["token"]).status_code == 204
    assert one(app, carol["id"], "passkey_removed").session_id == carol["session"]


def test_locked_once_at_the_lockout_count(app, carol, make_app, clock):
    counting = make_app(RATELIMIT_ENABLED="1", SIGNIN_FREE_FAILURES="2", SIGNIN_LOCKOUT_FAILURES="3")
    client = counting.test_client()
    for attempt in range(1, 5):
        clock.shift(timedelta(hours=2))  # past the backoff of the failures before
        response = client.post("/auth/login", json={"email": "carol@example.com", "password": f"wrong {attempt}" * 3})
        assert response.status_code == 401, response.get_json()
        assert len(rows(app, carol["id"], "locked")) == (1 if attempt >= 3 else 0), attempt
    assert one(app, carol["id"], "locked").detail == {"failures": 3}


def test_account_deleted(app, api, carol):
    problem(api.delete("/users/me", {"password": "not the password"}, token=carol["token"]), 401,
            "invalid_credentials")
    assert rows(app, carol["id"], "account_deleted") == []
    assert api.delete("/users/me", {"password": PASSWORD}, token=carol["token"]).status_code == 204
    assert one(app, carol["id"], "account_deleted").session_id == carol["session"]


def test_admin_actions_show_that_an_admin_did_them_not_where_from(app, api, carol, admin):
    path = f"/admin/users/{carol['id']}"
    assert api.patch(path, {"role": "user"}, token=admin).status_code == 200  # no change: no row
    assert rows(app, carol["id"], "role_changed") == []
    api.patch(path, {"role": "admin"}, token=admin)
    assert one(app, carol["id"], "role_changed").detail == {"role": "admin"}
    api.patch(path, {"role": "user", "disabled": True}, token=admin)
    disabled = one(app, carol["id"], "disabled")
    assert disabled.ip_address is None and disabled.session_id is None
    api.patch(path, {"disabled": False}, token=admin)
    one(app, carol["id"], "enabled")
    problem(api.delete(f"/admin/users/{carol['id']}/mfa", token=carol["token"]), 401, "token_revoked")
    assert api.delete(f"/admin/users/{carol['id']}/mfa", token=admin).status_code == 204
    one(app, carol["id"], "mfa_reset")
    assert api.delete(path, token=admin).status_code == 204
    assert one(app, carol["id"], "account_deleted").detail == {"byAdmin": True}
    assert api.post(f"{path}/restore", token=admin).status_code == 200
    one(app, carol["id"], "account_restored")
    assert api.post(f"{path}/restore", token=admin).status_code == 200  # restoring again changes nothing
    assert len(rows(app, carol["id"], "account_restored")) == 1


def test_the_listing_is_the_callers_own_newest_first_and_paginated(app, api, carol, clock):
    dave = api.register(email="dave@example.com")
    for minute in range(1, 6):
        clock.shift(60)
        api.login(email="carol@example.com")
    listed, cursor = [], None
    while True:
        response = api.get("/users/me/security-events", carol["token"],
                           query_string={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
        body = response.get_json()
        listed += body["events"]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(listed) == len(rows(app, carol["id"])) == 6  # registration + five sign-ins
    assert len({e["id"] for e in listed}) == 6
    assert [e["at"] for e in listed] == sorted((e["at"] for e in listed), reverse=True)
    assert dave["user"]["id"] not in {e["id"] for e in listed}
    first = listed[0]
    assert set(first) == {"id", "kind", "at", "ipAddress", "userAgent", "sessionId", "device", "detail"}
    problem(api.get("/users/me/security-events", carol["token"], query_string={"cursor": "forged.cursor"}),
            422, "validation_failed")
    for limit in (0, 101):
        problem(api.get("/users/me/security-events", carol["token"], query_string={"limit": limit}),
                422, "validation_failed")
    assert len(api.get("/users/me/security-events", carol["token"],
                       query_string={"limit": 100}).get_json()["events"]) == 6


def test_the_admin_variant(app, api, carol, admin):
    assert api.get(f"/admin/users/{carol['id']}/security-events", admin).get_json()["events"][0]["kind"] == "signed_in"
    problem(api.get(f"/admin/users/{carol['id']}/security-events", carol["token"]), 403, "forbidden")
    problem(api.get("/admin/users/00000000-0000-0000-0000-000000000000/security-events", admin), 404, "not_found")


def test_rows_older_than_the_retention_go_at_housekeeping(app, api, carol, clock):
    days = app.config["SECURITY_EVENTS_DAYS"]
    clock.shift(timedelta(days=days - 1))
    api.login(email="carol@example.com")  # a newer row, which stays
    clock.shift(timedelta(days=1, seconds=1))
    with app.app_context():
        removed = housekeeping.run(datetime.now(timezone.utc))
    assert removed["security_events"] == 1
    assert [e.kind for e in rows(app, carol["id"])] == ["signed_in"]  # the newer sign-in's


def test_concurrent_revocations_of_one_session_record_it_once(app, api, carol, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    other = api.login(email="carol@example.com")["session"]["id"]
    statuses = at_once(app, 6, lambda client: client.delete(
        f"/users/me/sessions/{other}", headers={"Authorization": f"Bearer {carol['token']}"}).status_code)
    assert sorted(statuses) == [204] + [404] * 5
    assert len(rows(app, carol["id"], "session_revoked")) == 1
