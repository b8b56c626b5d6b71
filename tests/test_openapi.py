"""/openapi.json is generated from the schemas that validate requests, and covers every JSON route."""
from openapi_spec_validator import validate

NOT_JSON_API = {"/openapi.json", "/metrics", "/static/<path:filename>"}


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


def _body_schema(document: dict, path: str, method: str) -> dict:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_null_is_documented_only_where_it_is_accepted(client, api):
    document = client.get("/openapi.json").get_json()
    profile = _body_schema(document, "/users/me", "patch")["properties"]
    for name in ("region", "currency", "locale", "timezone"):  # refused as null
        assert "anyOf" not in profile[name] and profile[name].get("type") == "string", name
    assert {"type": "null"} in profile["displayName"]["anyOf"]  # null clears it
    token = api.register()["tokens"]["accessToken"]
    assert api.patch("/users/me", json={"region": None}, token=token).status_code == 422
    assert api.patch("/users/me", json={"displayName": None}, token=token).status_code == 200
    admin = _body_schema(document, "/admin/users/{user_id}", "patch")["properties"]
    assert all("anyOf" not in admin[name] for name in ("showStatus", "role", "disabled", "subscription"))


def test_formats_patterns_and_lengths_are_the_enforced_ones(client):
    document = client.get("/openapi.json").get_json()
    register = _body_schema(document, "/auth/register", "post")["properties"]
    assert register["email"]["format"] == "idn-email" and register["email"]["maxLength"] == 320
    username = register["username"]["anyOf"][0]
    assert (username["minLength"], username["maxLength"]) == (3, 32) and username["pattern"].startswith("^")
    assert "Europe/Paris" in register["timezone"]["anyOf"][0]["enum"]
    assert register["locale"]["anyOf"][0]["pattern"] == "^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$"
    avatar = _body_schema(document, "/users/me", "patch")["properties"]["avatarUrl"]["anyOf"][0]
    assert avatar["maxLength"] == 2048 and avatar["pattern"] == "^[Hh][Tt][Tt][Pp][Ss]://"


def test_every_status_an_operation_can_answer_is_documented(client):
    document = client.get("/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            every = {"400", "413", "414", "415", "422", "429", "500", "503"}
            assert every <= set(operation["responses"]), (method, path)
            for status in ("429", "503"):
                assert operation["responses"][status]["headers"]["Retry-After"]["required"] is True


def test_a_body_of_optional_fields_may_be_left_out(client, api):
    document = client.get("/openapi.json").get_json()
    assert document["paths"]["/auth/logout"]["post"]["requestBody"]["required"] is False
    assert document["paths"]["/auth/login"]["post"]["requestBody"]["required"] is True
    token = api.register()["tokens"]["accessToken"]
    assert api.post("/auth/logout", token=token).status_code == 204


def test_optional_query_parameters_allow_an_empty_value(client):
    document = client.get("/openapi.json").get_json()
    parameters = {p["name"]: p for p in document["paths"]["/admin/users"]["get"]["parameters"] if p["in"] == "query"}
    assert parameters["cursor"]["allowEmptyValue"] is True
    assert parameters["cursor"]["schema"] == {"type": "string", "maxLength": 512}


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
