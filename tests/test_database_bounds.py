"""Every database call is bounded (DATABASE_TIMEOUT): connecting, waiting for the pool, each statement on
the server, and a server that stops answering altogether (frozen by SIGSTOP: it still ACKs TCP)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
import requests
from sqlalchemy import text

from gatehouse.extensions import db
from tests.actions import PASSWORD
from tests.conftest import BASE_CONFIG, PG_BIN, _migrate
from tests.live_server import Gatehouse
from tests.servers import Postgres


def test_each_postgresql_statement_is_bounded_on_the_server(app, leg):
    if leg != "postgres":
        pytest.skip("statement_timeout is PostgreSQL's")
    with app.app_context():
        assert db.session.scalar(text("SHOW statement_timeout")) == "5s"
        db.session.remove()


def test_the_bound_is_a_setting(make_app, leg):
    app = make_app(DATABASE_TIMEOUT="2")
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_timeout"] == 2
    assert options["connect_args"].get("connect_timeout", options["connect_args"].get("timeout")) == 2


@pytest.fixture
def frozen_postgres(tmp_path):
    """A PostgreSQL of this test alone (the shared one is never frozen), with the schema."""
    if PG_BIN is None:
        pytest.skip("needs the PostgreSQL server binaries")
    pg = Postgres(PG_BIN)
    pg.start()
    try:
        import psycopg

        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE gatehouse")
        config = {**BASE_CONFIG, "DATABASE_URL": pg.url("gatehouse"), "DATABASE_TIMEOUT": "2"}
        _migrate(config)
        yield pg, config
    finally:
        signal_server(pg, signal.SIGCONT)
        pg.stop()


def server_pids(pg: Postgres) -> list[int]:
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *map(int, children)]


def signal_server(pg: Postgres, sig: int) -> None:
    try:
        pids = server_pids(pg)
    except (FileNotFoundError, ValueError):
        return
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_a_frozen_database_is_503_within_seconds_and_healthz_answers_meanwhile(frozen_postgres, tmp_path):
    pg, config = frozen_postgres
    server = Gatehouse(config, tmp_path / "gunicorn.log")
    try:
        assert server.register(email="frozen@example.com")["user"]["email"] == "frozen@example.com"
        credentials = {"email": "frozen@example.com", "password": PASSWORD}
        assert server.call("POST", "/auth/login", json=credentials).status_code == 200  # pooled and warm

        signal_server(pg, signal.SIGSTOP)
        answer = {}

        def login():
            started = time.monotonic()
            answer["response"] = requests.post(server.url + "/auth/login", json=credentials, timeout=15)
            answer["seconds"] = time.monotonic() - started

        pending = threading.Thread(target=login)
        pending.start()
        health = requests.get(server.url + "/healthz", timeout=5)  # while the login waits on the database
        pending.join(20)
        assert health.status_code == 200
        response = answer["response"]
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "service_unavailable"
        assert 1 <= int(response.headers["Retry-After"]) <= 5
        assert answer["seconds"] < 10
        assert "SELECT" not in response.text and "psycopg" not in response.text

        signal_server(pg, signal.SIGCONT)
        after = server.call("POST", "/auth/login", json=credentials)
        assert after.status_code == 200, after.text
        assert after.json()["user"]["email"] == "frozen@example.com"
    finally:
        signal_server(pg, signal.SIGCONT)
        server.stop()
