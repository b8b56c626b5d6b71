"""/openapi.json is generated from the schemas that validate requests, and covers every JSON route."""
from openapi_spec_validator import validate

NOT_JSON_API = {"/openapi.json", "/static/<path:filename>"}


def test_the_document_is_valid_openapi_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_registered_json_route_is_documented(app, client):
    document = client.get("/openapi.json").get_json()
    import re

    for rule in app.url_map.iter_rules():
        if rule.rule in NOT_JSON_API or rule.endpoint.startswith("portal.") or rule.websocket:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        assert path in document["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], (method, path)


def test_request_schemas_are_the_validating_ones(client):
    document = client.get("/openapi.json").get_json()
    register = document["paths"]["/auth/register"]["post"]
    ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schema = document["components"]["schemas"][ref]
    assert schema["additionalProperties"] is False
    assert {"email", "password"} <= set(schema["required"])
    assert "displayName" in schema["properties"]  # camelCase, as on the wire
    assert "application/problem+json" in register["responses"]["422"]["content"]
    assert "409" in register["responses"]


def test_authenticated_operations_declare_bearer_and_401(client):
    document = client.get("/openapi.json").get_json()
    me = document["paths"]["/auth/me"]["get"]
    assert me["security"] == [{"bearer": []}]
    assert "401" in me["responses"]


def test_writes_document_idempotency_and_patch_documents_if_match(client):
    document = client.get("/openapi.json").get_json()
    patch = document["paths"]["/users/me"]["patch"]
    headers = {p["name"] for p in patch["parameters"] if p["in"] == "header"}
    assert {"If-Match", "Idempotency-Key"} <= headers
    assert {"409", "412"} <= set(patch["responses"])
    login = document["paths"]["/auth/login"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in login["parameters"]}
    assert "Idempotency-Key" not in {p["name"] for p in document["paths"]["/auth/me"]["get"]["parameters"]}


def test_second_factors_are_documented_with_the_webauthn_json_shapes(client):
    document = client.get("/openapi.json").get_json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    for path in ("/users/me/mfa", "/users/me/mfa/totp", "/users/me/mfa/totp/confirm", "/users/me/mfa/recovery-codes",
                 "/users/me/passkeys/options", "/users/me/passkeys", "/users/me/passkeys/{passkey_id}",
                 "/auth/mfa/verify", "/auth/mfa/passkey-options", "/auth/passkey/options", "/auth/passkey/login",
                 "/auth/reauthenticate", "/admin/users/{user_id}/mfa"):
        assert path in paths, path
    login_401 = paths["/auth/login"]["post"]["responses"]["401"]["content"]["application/problem+json"]["schema"]
    assert {"$ref": "#/components/schemas/MfaRequiredProblem"} in login_401["oneOf"]
    assert set(schemas["MfaRequiredProblem"]["allOf"][1]["required"]) == {"mfaToken", "methods", "expiresAt"}
    assert {"clientDataJSON", "authenticatorData", "signature"} <= set(schemas["AssertionResponseJSON"]["properties"])
    assert {"clientDataJSON", "attestationObject"} <= set(schemas["AttestationResponseJSON"]["properties"])
    creation = schemas["CreationOptionsResult"]["properties"]["options"]
    assert creation["title"] == "PublicKeyCredentialCreationOptionsJSON" and "authenticatorSelection" in creation["properties"]
    request_options = schemas["PasswordlessOptionsResult"]["properties"]["options"]
    assert request_options["title"] == "PublicKeyCredentialRequestOptionsJSON"
    assert "reauthentication_required" in paths["/users/me/mfa/totp"]["post"]["description"]
    assert "reauthentication_required" in paths["/users/me/password"]["post"]["description"]
