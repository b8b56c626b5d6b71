"""One JSON object per request line, with a request id, and never a secret."""
import json
import logging

from gatehouse.web import configure_logging
from tests.actions import PASSWORD


def access_records(caplog):
    return [r for r in caplog.records if r.name == "gatehouse.access"]


def test_each_request_is_logged_with_id_method_path_status_and_duration(client, caplog):
    with caplog.at_level(logging.INFO, logger="gatehouse.access"):
        response = client.get("/healthz?token=secret-query", headers={"X-Request-Id": "req-123"})
    assert response.headers["X-Request-Id"] == "req-123"
    [record] = access_records(caplog)
    assert (record.request_id, record.method, record.path, record.status) == ("req-123", "GET", "/healthz", 200)
    assert record.duration_ms >= 0
    assert "secret-query" not in json.dumps(record.__dict__, default=str)


def test_a_request_id_is_generated_when_none_or_an_unsafe_one_is_sent(client, caplog):
    with caplog.at_level(logging.INFO, logger="gatehouse.access"):
        first = client.get("/healthz")
        second = client.get("/healthz", headers={"X-Request-Id": "bad id with spaces and {braces}"})
    assert len(first.headers["X-Request-Id"]) == 32
    assert "bad" not in second.headers["X-Request-Id"] and len(second.headers["X-Request-Id"]) == 32


def test_no_password_token_or_authorization_header_reaches_the_log(api, caplog):
    with caplog.at_level(logging.DEBUG):
        result = api.register(email="log@example.com")
        tokens = result["tokens"]
        api.get("/auth/me", token=tokens["accessToken"])
        api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
        api.login(email="log@example.com", password="wrong password entirely", expect=401)
    text = "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
    for secret in (PASSWORD, "wrong password entirely", tokens["accessToken"], tokens["refreshToken"], "Bearer"):
        assert secret not in text


def test_log_lines_are_json_objects(capsys):
    configure_logging("INFO")
    try:
        logging.getLogger("gatehouse.access").info("request", extra={"path": "/x", "status": 200})
        line = capsys.readouterr().out.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "request" and record["path"] == "/x" and record["level"] == "INFO"
    finally:
        logging.getLogger().handlers.clear()
