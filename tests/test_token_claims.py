"""Access tokens name their issuer and audience and are typed at+jwt (RFC 9068, RFC 8725), and each
is verified; a refused token's 401 carries the RFC 6750 challenge."""
from __future__ import annotations

import jwt
import pytest

from gatehouse.security.tokens import derive_key
from tests.actions import Api, problem
from tests.conftest import BASE_CONFIG

CHALLENGE = 'Bearer realm="gatehouse", error="invalid_token"'


def signing_key() -> bytes:
    return derive_key(BASE_CONFIG["SECRET_KEY"], "access-token-hs256")


def parts(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def test_tokens_carry_iss_aud_and_typ(make_app):
    api = Api(make_app(PUBLIC_URL="https://auth.example.com/").test_client())
    token = api.register()["tokens"]["accessToken"]
    header, claims = parts(token)
    assert header["typ"] == "at+jwt"
    assert (claims["iss"], claims["aud"]) == ("https://auth.example.com", "gatehouse")
    assert api.get("/auth/me", token=token).status_code == 200
    default = Api(make_app(JWT_AUDIENCE="stack-api").test_client())
    header, claims = parts(default.register()["tokens"]["accessToken"])
    assert (claims["iss"], claims["aud"]) == ("gatehouse", "stack-api")


@pytest.mark.parametrize("header, change", [
    ({"typ": "JWT"}, {}),
    ({}, {"typ": None}),
    ({"typ": "at+jwt"}, {"iss": "https://evil.example"}),
    ({"typ": "at+jwt"}, {"aud": "another-service"}),
    ({"typ": "at+jwt"}, {"iss": None}),
    ({"typ": "at+jwt"}, {"aud": None}),
])
def test_a_signed_token_of_another_type_issuer_or_audience_is_refused(api, header, change):
    token = api.register()["tokens"]["accessToken"]
    original, claims = parts(token)
    headers = {**original, **header}
    for name, value in change.items():
        if value is None:
            claims.pop(name, None)
            headers.pop(name, None)
        else:
            claims[name] = value
    forged = jwt.encode(claims, signing_key(), algorithm="HS256", headers=headers)
    if "typ" not in headers:
        forged = jwt.encode(claims, signing_key(), algorithm="HS256", headers={"typ": None})
    response = api.get("/auth/me", token=forged)
    problem(response, 401, "token_invalid")
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert api.get("/auth/me", token=token).status_code == 200  # the real one still works


def test_another_deployments_tokens_are_refused(make_app):
    ours = Api(make_app(PUBLIC_URL="https://one.example.com").test_client())
    theirs = Api(make_app(PUBLIC_URL="https://two.example.com").test_client())
    token = theirs.register()["tokens"]["accessToken"]  # same SECRET_KEY, another issuer
    problem(ours.get("/auth/me", token=token), 401, "token_invalid")


def test_every_401_carries_a_bearer_challenge(api):
    for response in (api.get("/auth/me"), api.get("/auth/me", token="not-a-token")):
        problem(response, 401, "token_invalid")
        assert response.headers["WWW-Authenticate"] == CHALLENGE
    token = api.register()["tokens"]["accessToken"]
    api.post("/auth/logout", json={}, token=token)
    revoked = api.get("/auth/me", token=token)
    problem(revoked, 401, "token_revoked")
    assert revoked.headers["WWW-Authenticate"] == CHALLENGE
    wrong = api.client.post("/auth/login", json={"email": "nobody@example.com", "password": "not it at all"})
    problem(wrong, 401, "invalid_credentials")
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="gatehouse"'


def test_public_url_must_be_a_url(tmp_path):
    from gatehouse.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        load_config({"PUBLIC_URL": "auth.example.com", "SECRET_KEY": "k" * 40}, tmp_path)
