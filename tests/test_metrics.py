"""GET /metrics: who may scrape, what each counter counts, and the sum over gunicorn's processes."""
from __future__ import annotations

import itertools
import re
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import time_machine
from prometheus_client.parser import text_string_to_metric_families

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.outbox import enqueue
from tests.actions import PASSWORD, problem

TOKEN = "metrics-token-0123456789abcdef"
OUTSIDE = {"REMOTE_ADDR": "203.0.113.7"}
_addresses = (f"10.9.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted label pairs): value} of one scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client, **environ) -> str:
    response = client.get("/metrics", environ_base=environ)
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def login(client, email: str, password: str = PASSWORD):
    # A new client address each time: the per-address auth bucket stays out of the way.
    return client.post("/auth/login", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": next(_addresses)})


# ---- who may scrape ------------------------------------------------------------------------------

@pytest.fixture
def config(make_config):
    return make_config(METRICS_TOKEN=TOKEN)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_callers_scrape_without_a_token(client, address):
    assert "gatehouse_signins_total" in scrape(client, REMOTE_ADDR=address)


@pytest.mark.parametrize("authorization", [None, "", "Bearer", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x",
                                           f"Basic {TOKEN}", TOKEN, "Bearer " + "x" * 10000])
def test_other_callers_without_the_token_get_404(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers, environ_base=OUTSIDE)
    body = problem(response, 404, "not_found")
    assert "gatehouse" not in response.get_data(as_text=True).replace(body["type"], "")


def test_other_callers_with_the_token_scrape(client):
    response = client.get("/metrics", headers={"Authorization": f"bearer  {TOKEN} "}, environ_base=OUTSIDE)
    assert response.status_code == 200
    assert "gatehouse_http_request_duration_seconds" in response.get_data(as_text=True)


def test_without_metrics_token_set_only_loopback_scrapes(make_app):
    client = make_app(METRICS_TOKEN="").test_client()
    for authorization in ("Bearer ", "Bearer None", "Bearer null"):
        problem(client.get("/metrics", headers={"Authorization": authorization}, environ_base=OUTSIDE),
                404, "not_found")
    assert scrape(client)


# ---- what is counted ----------------------------------------------------------------------------

def test_request_durations_are_labelled_by_url_rule_and_status_class(client, api):
    user = api.register(email="durations@example.com")
    before = scrape(client)
    token = user["tokens"]["accessToken"]
    sid = "0f6f6c39-7b2e-4e55-9d4e-2b9b1f1d0c11"
    api.delete(f"/users/me/sessions/{sid}", token=token)  # 404: not the caller's
    api.get("/users/me", token=token)
    client.get("/no/such/path/durations@example.com")
    after = scrape(client)
    count = "gatehouse_http_request_duration_seconds_count"
    for route, status in (("/users/me/sessions/<session_id>", "4xx"), ("/users/me", "2xx"), ("unmatched", "4xx")):
        assert value(after, count, route=route, status=status) - value(before, count, route=route, status=status) == 1
    # No label holds a path, an id, an address or an email.
    labels = {v for _, pairs in samples(after) for _, v in pairs}
    assert not [v for v in labels if sid in v or "@" in v or re.search(r"\d+\.\d+\.\d+\.\d+", v)]
    assert user["user"]["id"] not in after and "durations" not in after


def test_sign_ins_by_outcome(make_app):
    app = make_app(METRICS_TOKEN=TOKEN, RATELIMIT_ENABLED="1", SIGNIN_FREE_FAILURES="2",
                   SIGNIN_BACKOFF_BASE="30", SIGNIN_BACKOFF_MAX="30", SIGNIN_LOCKOUT_FAILURES="3")
    client = app.test_client()
    client.post("/auth/register", json={"email": "outcomes@example.com", "password": PASSWORD})
    before = scrape(client)
    with time_machine.travel(now(), tick=False) as traveller:
        assert login(client, "outcomes@example.com").status_code == 200
        assert login(client, "outcomes@example.com", "wrong password 1").status_code == 401
        assert login(client, "nobody@example.com", "wrong password 1").status_code == 401
        assert login(client, "outcomes@example.com", "wrong password 2").status_code == 401  # 2 free failures
        assert login(client, "outcomes@example.com").status_code == 429  # waiting 30 s
        traveller.shift(timedelta(seconds=31))
        assert login(client, "outcomes@example.com", "wrong password 3").status_code == 401  # the 3rd: locked
        traveller.shift(timedelta(seconds=31))
        assert login(client, "outcomes@example.com").status_code == 401  # locked: the right password fails
        after = scrape(client)
    delta = {outcome: value(after, "gatehouse_signins_total", outcome=outcome)
             - value(before, "gatehouse_signins_total", outcome=outcome)
             for outcome in ("success", "invalid_credentials", "rate_limited", "locked")}
    assert delta == {"success": 1, "invalid_credentials": 4, "rate_limited": 1, "locked": 1}
    assert value(after, "gatehouse_rate_limited_total", bucket="sign_in") \
        - value(before, "gatehouse_rate_limited_total", bucket="sign_in") == 1


def test_the_auth_bucket_counts_its_refusals(make_app):
    client = make_app(RATELIMIT_ENABLED="1").test_client()
    before = scrape(client)
    statuses = [client.post("/auth/login", json={"email": "bucket@example.com", "password": "wrong password x"},
                            environ_base={"REMOTE_ADDR": "10.77.0.1"}).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]  # 10 per minute: the 11th is refused
    after = scrape(client)
    assert value(after, "gatehouse_rate_limited_total", bucket="auth") \
        - value(before, "gatehouse_rate_limited_total", bucket="auth") == 1
    assert value(after, "gatehouse_signins_total", outcome="rate_limited") \
        - value(before, "gatehouse_signins_total", outcome="rate_limited") == 1


def test_refreshes_by_outcome(client, api):
    tokens = api.register(email="rotations@example.com")["tokens"]
    before = scrape(client)
    first = api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert first.status_code == 200
    assert api.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).status_code == 401  # reused
    assert api.post("/auth/refresh", json={"refreshToken": first.get_json()["tokens"]["refreshToken"]}) \
        .status_code == 401  # its session was revoked by the reuse
    assert api.post("/auth/refresh", json={"refreshToken": "not-a-token"}).status_code == 401
    after = scrape(client)
    delta = {outcome: value(after, "gatehouse_refreshes_total", outcome=outcome)
             - value(before, "gatehouse_refreshes_total", outcome=outcome)
             for outcome in ("success", "reused", "revoked", "invalid", "expired")}
    assert delta == {"success": 1, "reused": 1, "revoked": 1, "invalid": 1, "expired": 0}


def test_outbox_depth_and_age_of_the_oldest_due_mail_are_read_at_scrape(app, client):
    start = now().replace(microsecond=0)
    assert value(scrape(client), "gatehouse_outbox_due") == 0
    assert value(scrape(client), "gatehouse_outbox_oldest_due_seconds") == 0
    with app.app_context():
        enqueue("password-changed", "a@example.com", {}, now=start)
        enqueue("password-changed", "b@example.com", {}, now=start + timedelta(seconds=30))
        enqueue("password-changed", "c@example.com", {}, now=start + timedelta(seconds=300))  # due later
        db.session.commit()
    with time_machine.travel(start + timedelta(seconds=90), tick=False):
        text = scrape(client)
    assert value(text, "gatehouse_outbox_due") == 2
    assert value(text, "gatehouse_outbox_oldest_due_seconds") == 90


def test_mail_sends_by_outcome(make_config, smtp_sink):
    from gatehouse import create_app
    from tests.smtp import deliver, mail_settings

    app = create_app(make_config(**mail_settings(smtp_sink)))
    client = app.test_client()
    before = scrape(client)
    with app.app_context():
        enqueue("password-changed", "sent@example.com", {}, now=now())
        enqueue("password-changed", "late@example.com", {}, now=now(), expires_at=now() - timedelta(seconds=1))
        db.session.commit()
    deliver(app)
    after = scrape(client)
    for outcome, expected in (("sent", 1), ("expired", 1), ("failed", 0)):
        assert value(after, "gatehouse_mail_sent_total", outcome=outcome) \
            - value(before, "gatehouse_mail_sent_total", outcome=outcome) == expected
    assert len(smtp_sink.messages) == 1
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_database_errors_are_counted_by_kind(app, client, leg):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    before = scrape(client)
    with app.app_context():
        for statement in ("SELECT * FROM no_such_table",
                          "INSERT INTO user_settings (user_id, preferences, updated_at) VALUES ('nobody', '{}', "
                          "CURRENT_TIMESTAMP)"):  # a foreign key to no user
            with pytest.raises(DBAPIError):
                db.session.execute(text(statement))
            db.session.rollback()
    after = scrape(client)
    missing_table = "OperationalError" if leg == "sqlite" else "ProgrammingError"
    for kind in (missing_table, "IntegrityError"):
        assert value(after, "gatehouse_database_errors_total", kind=kind) \
            - value(before, "gatehouse_database_errors_total", kind=kind) == 1, kind


def test_argon2_slots_in_flight_waits_and_refusals():
    from prometheus_client import REGISTRY, generate_latest

    from gatehouse.errors import ServiceUnavailable
    from gatehouse.security.passwords import Hasher

    def now_text() -> str:
        return generate_latest(REGISTRY).decode()

    hasher = Hasher(memory_kib=1024, time_cost=1, parallelism=1, concurrency=1, queue_timeout=0.001)
    before = now_text()
    held = hasher._slot()  # the one slot, taken as a computation would
    try:
        assert value(now_text(), "gatehouse_argon2_in_flight") - value(before, "gatehouse_argon2_in_flight") == 1
        with pytest.raises(ServiceUnavailable):
            hasher.hash("a password that waits for the slot")
    finally:
        held.release()
    after = now_text()
    assert value(after, "gatehouse_argon2_in_flight") == value(before, "gatehouse_argon2_in_flight")
    assert value(after, "gatehouse_argon2_waiting") == value(before, "gatehouse_argon2_waiting")
    assert value(after, "gatehouse_argon2_refused_total") - value(before, "gatehouse_argon2_refused_total") == 1
    waits = "gatehouse_argon2_wait_seconds_count"
    assert value(after, waits) - value(before, waits) == 1
    hasher.hash("a password with the slot free")  # no wait: nothing observed
    assert value(now_text(), waits) == value(after, waits)


# ---- many processes -----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_scrape_of_any_process_sums_every_process(serve, tmp_path):
    directory = tmp_path / "metrics"
    server = serve(processes=2, PROMETHEUS_MULTIPROC_DIR=str(directory), METRICS_TOKEN=TOKEN, TRUSTED_PROXIES="1")
    workers = server.worker_pids()
    assert len(workers) == 2
    server.register(email="many@example.com")
    logins = 24
    for _ in range(logins):  # a new connection each: the kernel spreads them over both workers' sockets
        response = requests.post(server.url + "/auth/login", json={"email": "many@example.com", "password": PASSWORD},
                                 headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
    for _ in range(8):  # whichever process answers, the totals are the instance's
        text = requests.get(server.url + "/metrics", headers={"Connection": "close"}, timeout=10).text
        assert value(text, "gatehouse_signins_total", outcome="success") == logins
        assert value(text, "gatehouse_http_request_duration_seconds_count",
                     route="/auth/login", status="2xx") == logins
    # Both processes counted some of them: the total is a sum, not one process's own count.
    per_process = _sign_ins_per_process(directory)
    assert set(per_process) == workers
    assert sum(per_process.values()) == logins and min(per_process.values()) > 0

    # WebSockets: the connection is counted while open, and the events it was sent.
    user = server.register(email="socket@example.com")
    socket = server.connect(token=user["tokens"]["accessToken"])  # its first frame: presence:updated
    try:
        server.call("PATCH", "/users/me", user["tokens"]["accessToken"], json={"displayName": "Socket"})
        socket.next_event("entity:updated")  # sent after the first frame was counted
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert value(text, "gatehouse_ws_connections") == 1
        assert value(text, "gatehouse_ws_events_total", event="presence:updated") >= 1
    finally:
        socket.close()

    # Behind a trusted proxy, a client that is not on loopback needs the token.
    outside = {"X-Forwarded-For": "203.0.113.9"}
    response = requests.get(server.url + "/metrics", headers=outside, timeout=10)
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/problem+json"
    assert "gatehouse_signins_total" not in response.text
    response = requests.get(server.url + "/metrics", headers={**outside, "Authorization": f"Bearer {TOKEN}"},
                            timeout=10)
    assert value(response.text, "gatehouse_signins_total", outcome="success") == logins


def _sign_ins_per_process(directory: Path) -> dict[int, float]:
    from prometheus_client.mmap_dict import MmapedDict

    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, found, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if '"gatehouse_signins_total"' in key and '"success"' in key:
                counts[pid] = counts.get(pid, 0) + found
    return counts
