"""Asymmetric access tokens (CONTRACT §5): JWT_PRIVATE_KEY, its kid, /.well-known/jwks.json, `keys generate`."""
import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gatehouse import create_app
from gatehouse.config import ConfigError
from gatehouse.security import keys
from tests.actions import Api, problem

ALGORITHMS = ["ES256", "EdDSA", "RS256"]


@pytest.fixture(scope="module")
def pems() -> dict:
    return {algorithm: keys.generate(algorithm) for algorithm in ALGORITHMS}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_keys_generate_prints_a_usable_key(runner, algorithm):
    result = runner.invoke(args=["keys", "generate", "--alg", algorithm])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("-----BEGIN PRIVATE KEY-----")
    assert "JWT_PRIVATE_KEY" in result.stderr and "JWT_PRIVATE_KEY" not in result.stdout
    assert keys.load(result.stdout).algorithm == algorithm


def test_keys_generate_refuses_an_unknown_algorithm(runner):
    result = runner.invoke(args=["keys", "generate", "--alg", "HS256"])
    assert result.exit_code != 0 and "HS256" in result.output


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tokens_are_signed_with_the_key_and_verify_with_the_jwks(make_app, pems, algorithm):
    api = Api(make_app(JWT_PRIVATE_KEY=pems[algorithm]).test_client())
    body = api.register()
    token = body["tokens"]["accessToken"]
    header = jwt.get_unverified_header(token)
    response = api.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    (jwk,) = response.get_json()["keys"]
    assert (jwk["alg"], jwk["use"], jwk["kid"]) == (algorithm, "sig", header["kid"])
    assert header["alg"] == algorithm
    assert "d" not in jwk and "p" not in jwk  # the public half only
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[algorithm], audience="gatehouse")
    assert claims["sub"] == body["user"]["id"]
    assert api.get("/auth/me", token=token).status_code == 200


def test_the_kid_is_the_rfc_7638_thumbprint(make_app, pems):
    app = make_app(JWT_PRIVATE_KEY=pems["ES256"])
    (jwk,) = app.test_client().get("/.well-known/jwks.json").get_json()["keys"]
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    assert jwk["kid"] == _b64(hashlib.sha256(canonical.encode()).digest())


def test_a_key_with_escaped_newlines_is_accepted(make_app, pems):
    escaped = pems["EdDSA"].replace("\n", "\\n")
    api = Api(make_app(JWT_PRIVATE_KEY=escaped).test_client())
    token = api.register()["tokens"]["accessToken"]
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert api.get("/auth/me", token=token).status_code == 200


def test_an_hs256_token_keyed_with_the_public_key_is_refused(make_app, pems):
    """Algorithm confusion: the public key used as an HMAC secret must not verify."""
    app = make_app(JWT_PRIVATE_KEY=pems["RS256"])
    api = Api(app.test_client())
    token = api.register()["tokens"]["accessToken"]
    claims = jwt.decode(token, options={"verify_signature": False})
    public_pem = keys.load(pems["RS256"]).public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (jwk,) = api.get("/.well-known/jwks.json").get_json()["keys"]
    for secret in (public_pem, json.dumps(jwk).encode()):
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": jwk["kid"]}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest())
        problem(api.get("/auth/me", token=f"{head}.{payload}.{signature}"), 401, "token_invalid")


def test_a_token_of_another_key_or_of_the_hs256_secret_is_refused(make_app, pems):
    hs_api = Api(make_app().test_client())
    hs_token = hs_api.register()["tokens"]["accessToken"]
    api = Api(make_app(JWT_PRIVATE_KEY=pems["ES256"]).test_client())
    problem(api.get("/auth/me", token=hs_token), 401, "token_invalid")  # the same session, another key
    claims = jwt.decode(hs_token, options={"verify_signature": False})
    other = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    problem(api.get("/auth/me", token=other), 401, "token_invalid")


def test_hs256_stays_the_default_and_publishes_no_key(api):
    token = api.register()["tokens"]["accessToken"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256" and "kid" not in header
    response = api.get("/.well-known/jwks.json")
    assert response.status_code == 200 and response.get_json() == {"keys": []}
    assert api.get("/auth/me", token=token).status_code == 200


@pytest.mark.parametrize("make_pem, reason", [
    (lambda: _pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
    (lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048"),
    (lambda: "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "PEM"),
    (lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")).decode(), "password"),
])
def test_an_unusable_key_refuses_to_start(make_config, make_pem, reason):
    with pytest.raises(ConfigError, match=f"JWT_PRIVATE_KEY.*{reason}"):
        create_app(make_config(JWT_PRIVATE_KEY=make_pem()))
