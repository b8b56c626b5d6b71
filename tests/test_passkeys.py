"""Passkeys with a software authenticator: registration, passwordless sign-in, second factor, and every refusal."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from gatehouse.extensions import db
from gatehouse.models import Passkey, WebauthnChallenge
from tests.actions import problem
from tests.authenticator import Authenticator, b64
from tests.mfa import claims, mails, password_step, verify

T0 = datetime(2026, 3, 3, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def user(api, clock):
    body = api.register(displayName="Pat")
    return {"id": body["user"]["id"], "email": body["user"]["email"], "token": body["tokens"]["accessToken"]}


def creation_options(api, token) -> dict:
    response = api.post("/users/me/passkeys/options", token=token)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["options"]


def register(api, token, authenticator, name="Laptop", **lie):
    credential = authenticator.create(creation_options(api, token), **lie)
    return api.post("/users/me/passkeys", {"credential": credential, "name": name}, token)


@pytest.fixture
def passkey_user(api, user):
    authenticator = Authenticator()
    response = register(api, user["token"], authenticator)
    assert response.status_code == 201, response.get_json()
    return {**user, "authenticator": authenticator, "passkey": response.get_json()["passkey"]}


def passwordless(api, authenticator, **lie):
    started = api.post("/auth/passkey/options").get_json()
    credential = authenticator.get(started["options"], **lie)
    return api.post("/auth/passkey/login", {"challengeId": started["challengeId"], "credential": credential})


def sign_count(app, passkey_id) -> int:
    with app.app_context():
        return db.session.get(Passkey, passkey_id).sign_count


def test_creation_options_ask_for_a_discoverable_credential_in_the_json_form(api, user):
    options = creation_options(api, user["token"])
    assert options["rp"] == {"id": "127.0.0.1", "name": "Gatehouse"}
    assert options["user"]["name"] == user["email"] and options["user"]["displayName"] == "Pat"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none" and options["timeout"] == 300000
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["excludeCredentials"] == []


def test_registration_stores_the_passkey_mails_and_lists_it(app, api, passkey_user, events):
    assert passkey_user["passkey"]["name"] == "Laptop" and passkey_user["passkey"]["lastUsedAt"] is None
    assert [(c["change"], c["factor"]) for t, c in mails(app, passkey_user["id"]) if t == "factor-changed"] == \
        [("added to", "a passkey named “Laptop”")]
    mfa = api.get("/users/me/mfa", passkey_user["token"]).get_json()
    assert [p["id"] for p in mfa["passkeys"]] == [passkey_user["passkey"]["id"]]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebauthnChallenge)
                                 .where(WebauthnChallenge.used_at.is_(None))) == 0
    # The next creation options exclude it.
    excluded = creation_options(api, passkey_user["token"])["excludeCredentials"]
    assert [c["id"] for c in excluded] == [b64(passkey_user["authenticator"].credentials[0].credential_id)]


def test_a_registration_answer_is_refused_for_another_origin_or_rp_id_or_when_replayed(app, api, user):
    authenticator = Authenticator()
    problem(register(api, user["token"], authenticator, origin="https://evil.example"), 400, "webauthn_failed")
    problem(register(api, user["token"], authenticator, rp_id="evil.example"), 400, "webauthn_failed")
    credential = authenticator.create(creation_options(api, user["token"]))
    assert api.post("/users/me/passkeys", {"credential": credential}, user["token"]).status_code == 201
    problem(api.post("/users/me/passkeys", {"credential": credential}, user["token"]), 400, "webauthn_failed")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Passkey)) == 1


def test_a_user_verified_passkey_alone_signs_in_at_aal2(app, api, passkey_user):
    response = passwordless(api, passkey_user["authenticator"])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["user"]["id"] == passkey_user["id"]
    token = claims(body["tokens"]["accessToken"])
    assert token["amr"] == ["hwk", "user", "mfa"] and token["aal"] == 2
    assert sign_count(app, passkey_user["passkey"]["id"]) == 1


def test_a_passkey_without_user_verification_is_one_factor(api, passkey_user):
    passkey_user["authenticator"].user_verified = False
    body = passwordless(api, passkey_user["authenticator"]).get_json()
    token = claims(body["tokens"]["accessToken"])
    assert token["amr"] == ["hwk"] and token["aal"] == 1


def test_a_replayed_challenge_is_refused(api, passkey_user):
    started = api.post("/auth/passkey/options").get_json()
    credential = passkey_user["authenticator"].get(started["options"])
    body = {"challengeId": started["challengeId"], "credential": credential}
    assert api.post("/auth/passkey/login", body).status_code == 200
    problem(api.post("/auth/passkey/login", body), 400, "webauthn_failed")


def test_a_challenge_lives_five_minutes(api, passkey_user, clock):
    in_time = api.post("/auth/passkey/options").get_json()
    late = api.post("/auth/passkey/options").get_json()
    clock.shift(299)
    credential = passkey_user["authenticator"].get(in_time["options"])
    assert api.post("/auth/passkey/login", {"challengeId": in_time["challengeId"], "credential": credential}) \
        .status_code == 200
    clock.shift(1)
    credential = passkey_user["authenticator"].get(late["options"])
    problem(api.post("/auth/passkey/login", {"challengeId": late["challengeId"], "credential": credential}),
            400, "webauthn_failed")


def test_adding_a_passkey_signs_other_sessions_out_and_publishes_the_change(app, api, user, events):
    other = api.login(email=user["email"])["tokens"]["accessToken"]
    assert register(api, user["token"], Authenticator()).status_code == 201
    problem(api.get("/users/me", other), 401, "token_revoked")
    assert api.get("/users/me", user["token"]).status_code == 200
    updates = [data for uid, event, data in events if event == "entity:updated" and uid == user["id"]]
    assert updates[-1]["fields"] == ["mfa"] and updates[-1]["version"] == 2


def test_a_signature_counter_that_goes_backwards_is_refused(app, api, passkey_user):
    authenticator = passkey_user["authenticator"]
    assert passwordless(api, authenticator, sign_count=7).status_code == 200
    problem(passwordless(api, authenticator, sign_count=7), 400, "webauthn_failed")
    problem(passwordless(api, authenticator, sign_count=3), 400, "webauthn_failed")
    assert sign_count(app, passkey_user["passkey"]["id"]) == 7
    assert passwordless(api, authenticator, sign_count=8).status_code == 200


@pytest.mark.parametrize("lie", [{"origin": "https://evil.example"}, {"origin": "http://127.0.0.1:8001"},
                                 {"rp_id": "evil.example"}])
def test_an_assertion_for_another_origin_or_rp_id_is_refused(app, api, passkey_user, lie):
    problem(passwordless(api, passkey_user["authenticator"], **lie), 400, "webauthn_failed")
    assert sign_count(app, passkey_user["passkey"]["id"]) == 0


def test_an_unknown_credential_is_refused(api, passkey_user):
    stranger = Authenticator()
    stranger.create(creation_options(api, passkey_user["token"]))  # made but never registered
    problem(passwordless(api, stranger), 400, "webauthn_failed")


def test_a_passkey_is_a_second_factor_after_the_password(app, api, passkey_user):
    step = password_step(api, passkey_user["email"])
    assert step["methods"] == ["passkey"]
    options = api.post("/auth/mfa/passkey-options", {"mfaToken": step["mfaToken"]}).get_json()["options"]
    assert [c["id"] for c in options["allowCredentials"]] == [
        b64(passkey_user["authenticator"].credentials[0].credential_id)]
    response = verify(api, step["mfaToken"], credential=passkey_user["authenticator"].get(options))
    assert response.status_code == 200, response.get_json()
    token = claims(response.get_json()["tokens"]["accessToken"])
    assert token["amr"] == ["pwd", "hwk", "user", "mfa"] and token["aal"] == 2


def test_a_passwordless_challenge_does_not_serve_as_a_second_step(api, passkey_user):
    step = password_step(api, passkey_user["email"])
    options = api.post("/auth/passkey/options").get_json()["options"]
    problem(verify(api, step["mfaToken"], credential=passkey_user["authenticator"].get(options)),
            400, "webauthn_failed")


def test_removing_a_passkey_mails_and_only_the_owner_can(app, api, passkey_user):
    other = api.register()["tokens"]["accessToken"]
    problem(api.delete(f"/users/me/passkeys/{passkey_user['passkey']['id']}", token=other), 404, "not_found")
    problem(api.delete("/users/me/passkeys/not-an-id", token=passkey_user["token"]), 404, "not_found")
    mine = f"/users/me/passkeys/{passkey_user['passkey']['id']}"
    assert api.delete(mine, token=passkey_user["token"]).status_code == 204
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Passkey)) == 0
    mailed = [(c["change"], c["factor"]) for t, c in mails(app, passkey_user["id"]) if t == "factor-changed"]
    assert ("removed from", "the passkey named “Laptop”") in mailed
    problem(passwordless(api, passkey_user["authenticator"]), 400, "webauthn_failed")


def test_reauthenticate_with_a_passkey(api, passkey_user, clock):
    clock.shift(timedelta(minutes=11))
    problem(api.post("/users/me/passkeys/options", token=passkey_user["token"]), 401, "reauthentication_required")
    options = api.post("/auth/reauthenticate/passkey-options", token=passkey_user["token"]).get_json()["options"]
    response = api.post("/auth/reauthenticate", {"password": "correct horse battery staple",
                                                 "credential": passkey_user["authenticator"].get(options)},
                        passkey_user["token"])
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["tokens"]["accessToken"]
    assert claims(token)["aal"] == 2
    assert api.post("/users/me/passkeys/options", token=token).status_code == 200


def test_malformed_credentials_are_422_or_400_never_500(api, user):
    not_json = {"id": "a", "rawId": "a", "type": "public-key",
                "response": {"clientDataJSON": "bm90LWpzb24", "attestationObject": "AA"}}
    for credential in [{}, {"id": "x"}, "text", not_json]:
        response = api.post("/users/me/passkeys", {"credential": credential}, user["token"])
        assert response.status_code in (400, 422), response.get_json()
    response = api.post("/auth/passkey/login", {"challengeId": "nope", "credential": {
        "id": "a", "rawId": "a", "type": "public-key",
        "response": {"clientDataJSON": "e30", "authenticatorData": "AA", "signature": "AA"}}})
    problem(response, 400, "webauthn_failed")
