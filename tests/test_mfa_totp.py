"""TOTP and recovery codes: enrolment, the mfa_required sign-in, replay and skew, tries, backoff, concurrency."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from gatehouse.extensions import db
from gatehouse.models import MfaChallenge, MfaTotp, RecoveryCode, Session
from tests.actions import problem
from tests.concurrency import at_once
from tests.mfa import claims, code, enrol_totp, mails, password_step, verify

T0 = datetime(2026, 3, 2, 9, 0, 5, tzinfo=timezone.utc)  # 5 s into a 30 s step


@pytest.fixture
def user(api, clock):
    body = api.register()
    return {"id": body["user"]["id"], "email": body["user"]["email"], "token": body["tokens"]["accessToken"]}


@pytest.fixture
def totp_user(api, user):
    secret, codes = enrol_totp(api, user["token"], T0)
    return {**user, "secret": secret, "codes": codes}


def count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


# ---- enrolment ---------------------------------------------------------------------------------

def test_enrolment_gives_a_pending_secret_uri_and_inline_svg_stored_sealed(app, api, user):
    response = api.post("/users/me/mfa/totp", token=user["token"])
    assert response.status_code == 201
    body = response.get_json()
    assert body["otpauthUri"].startswith("otpauth://totp/Gatehouse:")
    assert f"secret={body['secret']}" in body["otpauthUri"]
    assert body["qrSvg"].startswith("<svg") and "<script" not in body["qrSvg"] and "style=" not in body["qrSvg"]
    assert body["expiresAt"] == "2026-03-02T09:10:05.000Z"
    with app.app_context():
        row = db.session.get(MfaTotp, user["id"])
        assert row.confirmed_at is None and body["secret"].encode() not in row.secret
    # Pending is not on: sign-in needs no second step yet, and GET says so.
    assert api.get("/users/me/mfa", user["token"]).get_json() == {"totp": None, "passkeys": [], "recoveryCodesLeft": 0}
    assert api.login(email=user["email"])["tokens"]


def test_confirm_turns_totp_on_with_ten_hashed_recovery_codes(app, api, user):
    secret, codes = enrol_totp(api, user["token"], T0)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 11 and c[5] == "-" for c in codes)
    mfa = api.get("/users/me/mfa", user["token"]).get_json()
    assert mfa["totp"] == {"createdAt": "2026-03-02T09:00:05.000Z"} and mfa["recoveryCodesLeft"] == 10
    with app.app_context():
        stored = set(db.session.scalars(select(RecoveryCode.code_hash)))
    assert len(stored) == 10 and not stored & (set(codes) | {c.replace("-", "") for c in codes})
    problem(api.post("/users/me/mfa/totp", token=user["token"]), 409, "factor_exists")
    assert ("factor-changed", "added to") in [(t, c.get("change")) for t, c in mails(app, user["id"])]


def test_confirm_is_refused_with_a_wrong_code_and_after_ten_minutes(app, api, user, clock):
    secret = api.post("/users/me/mfa/totp", token=user["token"]).get_json()["secret"]
    wrong = f"{(int(code(secret, T0)) + 1) % 1000000:06d}"
    problem(api.post("/users/me/mfa/totp/confirm", {"code": wrong}, user["token"]), 400, "invalid_mfa_code")
    clock.move_to(T0 + timedelta(minutes=10))
    # Still fresh (REAUTH_MAX_AGE is 600 s: exactly 600 s old), but the pending secret has lapsed.
    response = api.post("/users/me/mfa/totp/confirm", {"code": code(secret, T0 + timedelta(minutes=10))},
                        user["token"])
    problem(response, 400, "invalid_mfa_code")
    assert count(app, MfaTotp, MfaTotp.confirmed_at.is_not(None)) == 0


def test_confirm_just_before_ten_minutes_works(api, user, clock):
    secret = api.post("/users/me/mfa/totp", token=user["token"]).get_json()["secret"]
    moment = T0 + timedelta(minutes=10) - timedelta(seconds=1)
    clock.move_to(moment)
    assert api.post("/users/me/mfa/totp/confirm", {"code": code(secret, moment)}, user["token"]).status_code == 200


# ---- sign-in with the second step --------------------------------------------------------------

def test_a_right_password_answers_mfa_required_and_opens_no_session(app, api, totp_user):
    sessions_before = count(app, Session)
    body = password_step(api, totp_user["email"])
    assert body["status"] == 401 and body["methods"] == ["totp", "recovery_code"]
    assert body["expiresAt"] == "2026-03-02T09:05:05.000Z" and len(body["mfaToken"]) >= 32
    assert count(app, Session) == sessions_before
    with app.app_context():
        assert db.session.scalar(select(MfaChallenge.token_hash)) != body["mfaToken"]


def test_verify_with_a_totp_code_opens_an_aal2_session(app, api, totp_user, clock):
    device = {"id": "p1", "name": "Pixel", "platform": "android"}
    mfa_token = password_step(api, totp_user["email"], device=device)["mfaToken"]
    clock.shift(30)
    response = verify(api, mfa_token, code=code(totp_user["secret"], T0 + timedelta(seconds=30)))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["session"]["device"]["name"] == "Pixel"
    token = claims(body["tokens"]["accessToken"])
    assert token["amr"] == ["pwd", "otp", "mfa"] and token["aal"] == 2
    assert token["auth_time"] == int((T0 + timedelta(seconds=30)).timestamp())
    # The mfaToken is single-use.
    problem(verify(api, mfa_token, code=code(totp_user["secret"], T0 + timedelta(seconds=60))), 401, "token_invalid")
    # A refresh keeps how the session was signed in.
    refreshed = api.post("/auth/refresh", {"refreshToken": body["tokens"]["refreshToken"]}).get_json()
    again = claims(refreshed["tokens"]["accessToken"])
    assert (again["amr"], again["aal"], again["auth_time"]) == (token["amr"], 2, token["auth_time"])


def test_a_used_code_and_any_earlier_step_are_refused(api, totp_user, clock):
    secret = totp_user["secret"]
    clock.shift(60)  # the enrolment spent T0's step
    now = T0 + timedelta(seconds=60)
    assert verify(api, password_step(api, totp_user["email"])["mfaToken"], code=code(secret, now)).status_code == 200
    problem(verify(api, password_step(api, totp_user["email"])["mfaToken"], code=code(secret, now)),
            400, "invalid_mfa_code")
    # The step before is inside the skew window, but earlier than the one used: refused.
    earlier = code(secret, now - timedelta(seconds=30))
    problem(verify(api, password_step(api, totp_user["email"])["mfaToken"], code=earlier), 400, "invalid_mfa_code")


@pytest.mark.parametrize("steps, accepted", [(-2, False), (-1, True), (0, True), (1, True), (2, False)])
def test_one_step_of_skew_either_way(api, totp_user, clock, steps, accepted):
    now = T0 + timedelta(minutes=5)  # well after the enrolment's step
    clock.move_to(now)
    mfa_token = password_step(api, totp_user["email"])["mfaToken"]
    response = verify(api, mfa_token, code=code(totp_user["secret"], now + timedelta(seconds=30 * steps)))
    assert response.status_code == (200 if accepted else 400), response.get_json()


def test_two_concurrent_verifications_with_one_code_let_exactly_one_in(app, api, totp_user, clock):
    clock.shift(60)
    the_code = code(totp_user["secret"], T0 + timedelta(seconds=60))
    tokens = iter([password_step(api, totp_user["email"])["mfaToken"] for _ in range(2)])
    pairs = [next(tokens), next(tokens)]
    statuses = at_once(app, 2, lambda client: client.post(
        "/auth/mfa/verify", json={"mfaToken": pairs.pop(), "code": the_code}).status_code)
    assert sorted(statuses) == [200, 400]


def test_four_wrong_codes_leave_the_mfa_token_alive_and_five_kill_it(app, api, totp_user, clock):
    clock.shift(60)
    right = code(totp_user["secret"], T0 + timedelta(seconds=60))
    wrong = f"{(int(right) + 1) % 1000000:06d}"
    alive = password_step(api, totp_user["email"])["mfaToken"]
    for _ in range(4):
        problem(verify(api, alive, code=wrong), 400, "invalid_mfa_code")
    assert verify(api, alive, code=right).status_code == 200

    clock.shift(30)
    right = code(totp_user["secret"], T0 + timedelta(seconds=90))
    dead = password_step(api, totp_user["email"])["mfaToken"]
    for _ in range(5):
        problem(verify(api, dead, code=wrong), 400, "invalid_mfa_code")
    problem(verify(api, dead, code=right), 401, "token_invalid")
    with app.app_context():
        assert db.session.scalar(select(func.max(MfaChallenge.tries))) == 5


def test_the_mfa_token_is_bound_to_the_sign_ins_user_agent_and_lives_five_minutes(api, totp_user, clock):
    clock.shift(60)
    mfa_token = password_step(api, totp_user["email"])["mfaToken"]
    other = api.client.post("/auth/mfa/verify", headers={"User-Agent": "SomeoneElse/1.0"},
                            json={"mfaToken": mfa_token, "code": code(totp_user["secret"], T0 + timedelta(seconds=60))})
    problem(other, 401, "token_invalid")
    in_time = password_step(api, totp_user["email"])["mfaToken"]
    late = password_step(api, totp_user["email"])["mfaToken"]
    clock.shift(299)
    assert verify(api, in_time, code=code(totp_user["secret"], T0 + timedelta(seconds=359))).status_code == 200
    clock.shift(1)
    problem(verify(api, late, code=code(totp_user["secret"], T0 + timedelta(seconds=390))), 401, "token_invalid")


def test_wrong_codes_count_toward_the_identifiers_backoff(make_app, clock):
    from tests.actions import Api

    app = make_app(RATELIMIT_ENABLED="1", SIGNIN_FREE_FAILURES="3", SIGNIN_LOCKOUT_FAILURES="50")
    api = Api(app.test_client())
    body = api.register()
    secret, _ = enrol_totp(api, body["tokens"]["accessToken"], T0)
    email = body["user"]["email"]
    mfa_token = password_step(api, email)["mfaToken"]
    for _ in range(2):
        problem(verify(api, mfa_token, code="000000" if code(secret, T0) != "000000" else "111111"), 400,
                "invalid_mfa_code")
    # The password again is right, yet does not reset the count: only a finished sign-in does.
    mfa_token = password_step(api, email)["mfaToken"]
    problem(verify(api, mfa_token, code="000000" if code(secret, T0) != "000000" else "111111"), 400,
            "invalid_mfa_code")
    problem(api.client.post("/auth/login", json={"email": email, "password": "correct horse battery staple"}),
            429, "rate_limited")


# ---- recovery codes ----------------------------------------------------------------------------

def test_a_recovery_code_signs_in_once_is_mailed_and_signs_other_sessions_out(app, api, totp_user):
    first = totp_user["codes"][0]
    response = verify(api, password_step(api, totp_user["email"])["mfaToken"], code=first.upper())
    assert response.status_code == 200
    body = response.get_json()
    assert claims(body["tokens"]["accessToken"])["aal"] == 2
    assert ("recovery-code-used", 9) in [(t, c.get("left")) for t, c in mails(app, totp_user["id"])]
    with app.app_context():
        live = set(db.session.scalars(select(Session.id).where(Session.user_id == totp_user["id"],
                                                               Session.revoked_at.is_(None))))
    assert live == {body["session"]["id"]}
    assert api.get("/users/me/mfa", body["tokens"]["accessToken"]).get_json()["recoveryCodesLeft"] == 9
    problem(verify(api, password_step(api, totp_user["email"])["mfaToken"], code=first), 400, "invalid_mfa_code")


def test_concurrent_uses_of_one_recovery_code_let_exactly_one_in(app, api, totp_user):
    the_code = totp_user["codes"][3]
    pairs = [password_step(api, totp_user["email"])["mfaToken"] for _ in range(4)]
    statuses = at_once(app, 4, lambda client: client.post(
        "/auth/mfa/verify", json={"mfaToken": pairs.pop(), "code": the_code}).status_code)
    assert sorted(statuses) == [200, 400, 400, 400]
    assert count(app, RecoveryCode, RecoveryCode.used_at.is_not(None)) == 1


def test_regenerating_recovery_codes_kills_the_old_set(app, api, totp_user):
    response = api.post("/users/me/mfa/recovery-codes", token=totp_user["token"])
    assert response.status_code == 200
    fresh = response.get_json()["recoveryCodes"]
    assert len(fresh) == 10 and not set(fresh) & set(totp_user["codes"])
    assert count(app, RecoveryCode, RecoveryCode.user_id == totp_user["id"]) == 10
    problem(verify(api, password_step(api, totp_user["email"])["mfaToken"], code=totp_user["codes"][0]),
            400, "invalid_mfa_code")
    assert verify(api, password_step(api, totp_user["email"])["mfaToken"], code=fresh[0]).status_code == 200


# ---- removal, side effects ---------------------------------------------------------------------

def test_removing_totp_mails_revokes_other_sessions_and_drops_the_codes(app, api, totp_user, events):
    other = verify(api, password_step(api, totp_user["email"])["mfaToken"], code=totp_user["codes"][0]).get_json()
    # The recovery code signed the enrolling session out; continue in the new one.
    token = other["tokens"]["accessToken"]
    third = verify(api, password_step(api, totp_user["email"])["mfaToken"], code=totp_user["codes"][1]).get_json()
    token = third["tokens"]["accessToken"]
    assert api.delete("/users/me/mfa/totp", token=token).status_code == 204
    assert ("factor-changed", "removed from") in [(t, c.get("change")) for t, c in mails(app, totp_user["id"])]
    assert count(app, RecoveryCode, RecoveryCode.user_id == totp_user["id"]) == 0
    assert count(app, Session, Session.user_id == totp_user["id"], Session.revoked_at.is_(None)) == 1
    assert api.get("/users/me/mfa", token).get_json() == {"totp": None, "passkeys": [], "recoveryCodesLeft": 0}
    assert api.login(email=totp_user["email"])["tokens"]
    updates = [data for uid, event, data in events if event == "entity:updated" and uid == totp_user["id"]]
    assert updates and updates[-1]["fields"] == ["mfa"]
    problem(api.delete("/users/me/mfa/totp", token=token), 404, "not_found")


def test_an_admin_resets_a_users_factors(app, api, totp_user, runner):
    result = runner.invoke(args=["users", "create-admin", "boss@example.com", "--password",
                                 "correct horse battery staple"])
    assert result.exit_code == 0, result.output
    admin = api.login(email="boss@example.com")["tokens"]["accessToken"]
    problem(api.delete(f"/admin/users/{totp_user['id']}/mfa", token=totp_user["token"]), 403, "forbidden")
    assert api.delete(f"/admin/users/{totp_user['id']}/mfa", token=admin).status_code == 204
    assert count(app, MfaTotp, MfaTotp.user_id == totp_user["id"]) == 0
    assert count(app, RecoveryCode, RecoveryCode.user_id == totp_user["id"]) == 0
    assert "mfa-reset" in [template for template, _ in mails(app, totp_user["id"])]
    problem(api.get("/users/me", totp_user["token"]), 401, "token_revoked")
    assert api.login(email=totp_user["email"])["tokens"]


# ---- step-up -----------------------------------------------------------------------------------

def test_a_change_needs_a_recent_sign_in_and_reauthenticate_renews_it(api, user, clock):
    clock.shift(600)
    assert api.post("/users/me/mfa/totp", token=user["token"]).status_code == 201  # exactly 600 s: fresh
    clock.shift(1)
    problem(api.post("/users/me/mfa/totp", token=user["token"]), 401, "reauthentication_required")
    problem(api.post("/users/me/password", {"currentPassword": "correct horse battery staple",
                                            "newPassword": "another long passphrase here"}, user["token"]),
            401, "reauthentication_required")
    problem(api.post("/auth/reauthenticate", {"password": "wrong password entirely"}, user["token"]),
            401, "invalid_credentials")
    response = api.post("/auth/reauthenticate", {"password": "correct horse battery staple"}, user["token"])
    assert response.status_code == 200
    token = response.get_json()["tokens"]["accessToken"]
    assert claims(token)["auth_time"] == int((T0 + timedelta(seconds=601)).timestamp())
    assert api.post("/users/me/mfa/totp", token=token).status_code == 201


def test_an_account_with_a_second_factor_needs_aal2_for_changes(app, api, totp_user, clock):
    # A session at AAL1 (as before the factor existed) may not change factors even when recent.
    with app.app_context():
        db.session.execute(Session.__table__.update().values(aal=1, amr="pwd"))
        db.session.commit()
    problem(api.post("/users/me/mfa/recovery-codes", token=totp_user["token"]), 401, "reauthentication_required")
    problem(api.post("/auth/reauthenticate", {"password": "correct horse battery staple"}, totp_user["token"]),
            422, "validation_failed")
    clock.shift(60)
    response = api.post("/auth/reauthenticate", {"password": "correct horse battery staple",
                                                 "code": code(totp_user["secret"], T0 + timedelta(seconds=60))},
                        totp_user["token"])
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["tokens"]["accessToken"]
    assert claims(token)["aal"] == 2
    assert api.post("/users/me/mfa/recovery-codes", token=token).status_code == 200


def test_purge_removes_every_factor_row_with_the_account(app, api, totp_user, runner, clock):
    mfa_token = password_step(api, totp_user["email"])["mfaToken"]
    assert mfa_token
    assert api.delete("/users/me", {"password": "correct horse battery staple"}, totp_user["token"]).status_code == 204
    clock.shift(timedelta(days=31))
    assert runner.invoke(args=["users", "purge", "--older-than", "30"]).exit_code == 0
    for model in (MfaTotp, RecoveryCode, MfaChallenge):
        assert count(app, model) == 0


def _stored_bodies(app) -> bytes:
    from sqlalchemy import text

    with app.app_context():
        rows = db.session.execute(text("SELECT * FROM idempotency_keys")).mappings().all()
    return b"".join(repr(dict(row)).encode() + bytes(row["response_body"] or b"") for row in rows)


def test_second_factor_secrets_and_the_mfa_token_are_never_kept_readable_for_replays(app, api, user, clock):
    started = api.post("/users/me/mfa/totp", token=user["token"], headers={"Idempotency-Key": "enrol-1"})
    secret = started.get_json()["secret"]
    confirmed = api.post("/users/me/mfa/totp/confirm", {"code": code(secret, T0)}, user["token"],
                         headers={"Idempotency-Key": "confirm-1"})
    codes = confirmed.get_json()["recoveryCodes"]
    step = api.client.post("/auth/login", json={"email": user["email"], "password": "correct horse battery staple"},
                           headers={"Idempotency-Key": "login-1"})
    mfa_token = problem(step, 401, "mfa_required")["mfaToken"]
    dump = _stored_bodies(app)
    for value in (secret, mfa_token, *codes):
        assert value.encode() not in dump
    # A retry within 60 s gets the same answer back, sealed while kept.
    again = api.client.post("/auth/login", json={"email": user["email"], "password": "correct horse battery staple"},
                            headers={"Idempotency-Key": "login-1"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json()["mfaToken"] == mfa_token
