"""Bad input of any shape gets a clear problem+json 4xx, never a 500."""
import json
import logging

import pytest

from tests.actions import PASSWORD, problem

LOGIN = "/auth/login"


def post_raw(client, data, content_type="application/json", path=LOGIN):
    return client.post(path, data=data, content_type=content_type)


def test_body_over_64_kib_is_413(client):
    body = json.dumps({"email": "a@example.com", "password": "x" * (64 * 1024)})
    problem(post_raw(client, body), 413, "payload_too_large")


def test_body_of_exactly_64_kib_is_read(client):
    filler = "x" * (64 * 1024 - len(json.dumps({"email": "", "password": ""})) - len("a@example.com"))
    body = json.dumps({"email": "a@example.com", "password": filler})
    assert len(body.encode()) == 64 * 1024
    # Read and validated (the password is over the 1,024-character bound), not refused as too large.
    problem(post_raw(client, body), 422, "validation_failed")


def test_chunked_body_over_the_limit_is_413(app):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Response

    body = json.dumps({"email": "a@example.com", "password": "x" * (70 * 1024)}).encode()
    environ = EnvironBuilder(path=LOGIN, method="POST", data=body, content_type="application/json").get_environ()
    del environ["CONTENT_LENGTH"]  # a chunked request announces no length
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    response = Response.from_app(app.wsgi_app, environ)  # the environ as a chunked-capable server gives it
    problem(response, 413, "payload_too_large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_json_is_415(client, content_type):
    problem(post_raw(client, "email=a&password=b", content_type), 415, "unsupported_media_type")


@pytest.mark.parametrize("data", [
    "{", "not json", '{"email": }', "{'email': 'single quotes'}", '{"email": "a"} trailing',
])
def test_malformed_json_is_400(client, data):
    problem(post_raw(client, data), 400, "bad_request")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(client, constant):
    problem(post_raw(client, '{"email": "a@example.com", "password": %s}' % constant), 400, "bad_request")


def test_duplicate_keys_are_refused(client):
    problem(post_raw(client, '{"password": "a", "password": "b", "email": "a@example.com"}'), 400, "bad_request")


def test_invalid_utf8_is_400(client):
    problem(post_raw(client, b'{"email": "\xff\xfe", "password": "x"}'), 400, "bad_request")


def test_nesting_at_the_limit_is_read_and_one_deeper_is_refused(client):
    def nested(depth):
        return '{"device": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"

    # depth 32: parsed, then refused by the schema as the wrong type (422)
    problem(post_raw(client, nested(32)), 422, "validation_failed")
    problem(post_raw(client, nested(33)), 400, "bad_request")


def test_pathological_nesting_is_400(client):
    problem(post_raw(client, "[" * 30000 + "]" * 30000), 400, "bad_request")


@pytest.mark.parametrize("value", ["a\\u0000b", "\\ud800", "x\\udfffy"])
def test_nul_and_lone_surrogates_are_422_naming_the_field(client, value):
    body = problem(post_raw(client, '{"email": "a@example.com", "password": "%s"}' % value), 422,
                   "validation_failed")
    assert body["errors"][0]["field"] == "password"


def test_lone_surrogate_in_a_key_is_refused(client):
    problem(post_raw(client, '{"\\ud800": 1, "password": "x", "email": "a@example.com"}'), 422, "validation_failed")


@pytest.mark.parametrize("data", ["[]", '"text"', "null", "42", "true"])
def test_a_body_that_is_not_an_object_is_422(client, data):
    problem(post_raw(client, data), 422, "validation_failed")


def test_wrong_types_and_unknown_fields_are_named(client):
    response = client.post("/auth/register", json={"email": 42, "password": ["x"], "admin": True,
                                                   "device": {"name": 1, "platform": "ios", "extra": 1}})
    body = problem(response, 422, "validation_failed")
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"email", "password", "admin", "device.name", "device.extra"}
    assert fields["admin"] == "is not a known field"


def test_strings_are_not_coerced(client):
    body = problem(client.post("/auth/logout", json={"allSessions": "yes"},
                               headers={"Authorization": "Bearer x"}), 401, "token_invalid")
    assert body["status"] == 401  # authentication is checked before the body


def test_missing_body_names_the_required_fields(client):
    body = problem(client.post(LOGIN), 422, "validation_failed")
    assert {"password"} <= {e["field"] for e in body["errors"]}


def test_a_body_on_an_endpoint_that_takes_none_must_be_empty(api):
    tokens = api.register()["tokens"]
    response = api.client.get("/auth/me", json={"x": 1}, headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    problem(response, 422, "validation_failed")


def test_unknown_path_is_404_problem(client):
    problem(client.get("/no/such/thing"), 404, "not_found")


def test_wrong_method_is_405_with_allow(client):
    response = client.get(LOGIN)
    problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unhandled_error_is_500_without_detail_and_logs_no_trace(app, caplog):
    def explode():
        raise RuntimeError("SELECT password_hash FROM users -- secret detail")

    app.add_url_rule("/explode", "explode", explode)
    with caplog.at_level(logging.ERROR, logger="gatehouse"):
        response = app.test_client().get("/explode")
    body = problem(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert "SELECT" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert body["detail"] == "The request could not be completed."
    records = [r for r in caplog.records if r.name == "gatehouse"]
    assert records and all(r.exc_info is None for r in records)
    logged = " ".join(r.getMessage() + str(r.__dict__) for r in records)
    assert "SELECT" not in logged and "secret detail" not in logged
    assert records[0].error_type == "RuntimeError"
    assert records[0].request_id == response.headers["X-Request-Id"]


@pytest.mark.parametrize("path, method", [("/healthz", "get"), (LOGIN, "post"), ("/nope", "get"),
                                          ("/openapi.json", "get")])
def test_every_response_carries_the_security_headers(client, path, method):
    response = getattr(client, method)(path, json={} if method == "post" else None)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Request-Id"]


def test_token_responses_are_not_cached(api):
    response = api.client.post("/auth/register", json={"email": "c@example.com", "password": PASSWORD})
    assert response.headers["Cache-Control"] == "no-store"
