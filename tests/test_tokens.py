"""Access tokens (CONTRACT §5): claims, one algorithm, and a 401 with the right code for every bad token."""
import base64
import json
from datetime import datetime, timedelta, timezone

import jwt
import pytest
import time_machine

from gatehouse.security.tokens import derive_key
from tests.actions import problem
from tests.conftest import BASE_CONFIG


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def signing_key() -> bytes:
    return derive_key(BASE_CONFIG["SECRET_KEY"], "access-token-hs256")


def test_access_token_claims(api):
    body = api.register(email="claims@example.com", region="DE")
    token = body["tokens"]["accessToken"]
    header = jwt.get_unverified_header(token)
    claims = claims_of(token)
    assert header["alg"] == "HS256"
    assert {"sub", "sid", "jti", "iat", "exp", "type", "role", "region", "currency"} <= set(claims)
    assert claims["sub"] == body["user"]["id"] and claims["sid"] == body["session"]["id"]
    assert (claims["type"], claims["role"], claims["region"], claims["currency"]) == ("access", "user", "DE", "EUR")
    assert claims["exp"] - claims["iat"] == 900
    # signed with the derived key, not SECRET_KEY itself
    jwt.decode(token, signing_key(), algorithms=["HS256"], audience="gatehouse", issuer="gatehouse")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, BASE_CONFIG["SECRET_KEY"], algorithms=["HS256"], audience="gatehouse")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused(api):
    claims = claims_of(api.register()["tokens"]["accessToken"])
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    problem(api.get("/auth/me", token=token), 401, "token_invalid")


def test_a_tampered_signature_is_refused(api):
    token = api.register()["tokens"]["accessToken"]
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    problem(api.get("/auth/me", token=f"{head}.{payload}.{flipped}"), 401, "token_invalid")


def test_tampered_claims_are_refused(api):
    token = api.register()["tokens"]["accessToken"]
    head, _, signature = token.split(".")
    claims = claims_of(token) | {"role": "admin"}
    problem(api.get("/auth/me", token=f"{head}.{_b64(claims)}.{signature}"), 401, "token_invalid")


def test_another_algorithm_with_the_right_key_is_refused(api):
    claims = claims_of(api.register()["tokens"]["accessToken"])
    token = jwt.encode(claims, signing_key() * 2, algorithm="HS512")
    problem(api.get("/auth/me", token=token), 401, "token_invalid")


@pytest.mark.parametrize("change", [{"type": "refresh"}, {"exp": None}, {"sid": None}])
def test_wrong_type_and_missing_claims_are_refused_even_when_signed(api, change):
    claims = claims_of(api.register()["tokens"]["accessToken"])
    for name, value in change.items():
        if value is None:
            del claims[name]
        else:
            claims[name] = value
    token = jwt.encode(claims, signing_key(), algorithm="HS256")
    problem(api.get("/auth/me", token=token), 401, "token_invalid")


def test_an_expired_token_is_token_expired(api):
    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        token = api.register()["tokens"]["accessToken"]
    with time_machine.travel(start + timedelta(seconds=899), tick=False):
        assert api.get("/auth/me", token=token).status_code == 200
    with time_machine.travel(start + timedelta(seconds=901), tick=False):
        problem(api.get("/auth/me", token=token), 401, "token_expired")


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic abc", "bearer not-a-jwt", "Token x.y.z"])
def test_missing_or_malformed_authorization_is_token_invalid(client, header):
    problem(client.get("/auth/me", headers={"Authorization": header} if header else {}), 401, "token_invalid")


def test_a_token_in_the_query_string_is_ignored(api):
    token = api.register()["tokens"]["accessToken"]
    problem(api.client.get(f"/auth/me?access_token={token}"), 401, "token_invalid")
    problem(api.client.get("/auth/me", headers={"Cookie": f"access_token_cookie={token}"}), 401, "token_invalid")


def test_the_token_of_a_deleted_session_is_revoked(app, api):
    from sqlalchemy import text

    from gatehouse.extensions import db

    token = api.register()["tokens"]["accessToken"]
    with app.app_context():
        db.session.execute(text("DELETE FROM sessions"))
        db.session.commit()
    problem(api.get("/auth/me", token=token), 401, "token_revoked")


def test_a_token_stops_working_when_the_account_is_disabled(app, api):
    from sqlalchemy import update

    from gatehouse.extensions import db
    from gatehouse.models import User

    token = api.register()["tokens"]["accessToken"]
    with app.app_context():
        db.session.execute(update(User).values(disabled=True))
        db.session.commit()
    problem(api.get("/auth/me", token=token), 401, "token_revoked")


def test_access_tokens_carry_no_claims_beyond_the_contract(api):
    claims = claims_of(api.register()["tokens"]["accessToken"])
    # flask-jwt-extended's own "fresh" flag, RFC 9068's iss and aud, and how the session was signed in
    # (amr, aal, auth_time) are the only additions; no nbf.
    assert set(claims) <= {"sub", "sid", "jti", "iat", "exp", "type", "role", "region", "currency", "fresh", "iss",
                           "aud", "amr", "aal", "auth_time"}
    assert (claims["amr"], claims["aal"]) == (["pwd"], 1) and claims["auth_time"] == claims["iat"]


class CountedVerify:
    """PyJWT's verification, counted: how many times a token's signature was checked."""

    def __init__(self, monkeypatch):
        from gatehouse.services import tokens

        self.calls = 0
        real = tokens.pyjwt.decode_complete

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(tokens.pyjwt, "decode_complete", counted)


def test_a_process_verifies_each_token_once_and_checks_its_times_on_every_request(api, monkeypatch):
    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        token = api.register()["tokens"]["accessToken"]
        counted = CountedVerify(monkeypatch)
        for _ in range(3):
            assert api.get("/auth/me", token=token).status_code == 200
        assert counted.calls == 1
    with time_machine.travel(start - timedelta(seconds=1), tick=False):  # the clock went back: issued "later"
        problem(api.get("/auth/me", token=token), 401, "token_invalid")
    with time_machine.travel(start + timedelta(seconds=900), tick=False):  # exp itself is past
        problem(api.get("/auth/me", token=token), 401, "token_expired")
    assert counted.calls == 1


def test_a_token_that_fails_verification_is_never_remembered(app, api, monkeypatch):
    token = api.register()["tokens"]["accessToken"]
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    counted = CountedVerify(monkeypatch)
    for _ in range(2):
        problem(api.get("/auth/me", token=tampered), 401, "token_invalid")
    assert counted.calls == 2
    assert api.get("/auth/me", token=token).status_code == 200
    assert app.extensions["gatehouse.verified_tokens"].cache_info().currsize == 1


def test_a_remembered_token_of_a_revoked_session_is_refused(app, api):
    from sqlalchemy import text

    from gatehouse.extensions import db

    token = api.register()["tokens"]["accessToken"]
    assert api.get("/auth/me", token=token).status_code == 200
    with app.app_context():
        db.session.execute(text("DELETE FROM sessions"))
        db.session.commit()
    problem(api.get("/auth/me", token=token), 401, "token_revoked")
