"""Production hardening: HSTS, the __Host- portal cookie, the portal's idle timeout, an admin
password that never needs the command line, and a warning for development facing a network."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import time_machine
from sqlalchemy import select

from gatehouse.clock import now
from gatehouse.config import exposed_development_warning
from gatehouse.extensions import db
from gatehouse.models import Session, User
from gatehouse.web import HSTS
from tests.actions import PASSWORD, Api
from tests.live_server import GUNICORN, ROOT
from tests.servers import free_port
from tests.smtp import mail_settings
from tests.test_portal import Portal, mark_verified, redirected_to

IDLE = 12 * 3600


def production(make_app, smtp_sink, **overrides):
    return make_app(APP_ENV="production", MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp_sink.port),
                    ARGON2_MEMORY_KIB="19456", ARGON2_TIME_COST="2", RATELIMIT_ENABLED="1", **overrides)


def test_production_answers_carry_hsts_and_development_does_not(make_app, smtp_sink, client):
    app = production(make_app, smtp_sink)
    for path in ("/healthz", "/login", "/auth/me"):
        assert app.test_client().get(path).headers["Strict-Transport-Security"] == HSTS
    assert "Strict-Transport-Security" not in client.get("/healthz").headers


def test_the_production_portal_cookie_is_a_host_cookie(make_app, smtp_sink):
    app = production(make_app, smtp_sink)
    portal = Portal(app.test_client())
    response = portal.register("host@example.com")
    redirected_to(response, "/verify-email")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-gatehouse=")
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert "secure" in attributes and "path=/" in attributes and "httponly" in attributes
    assert not any(part.startswith("domain=") for part in attributes)
    assert portal.get("/verify-email").status_code == 200  # the browser is signed in with it


def test_the_development_cookie_keeps_its_plain_name(app, api):
    api.register(email="plain@example.com")
    mark_verified(app, "plain@example.com")
    response = Portal(app.test_client()).login("plain@example.com")
    assert re.match(r"session=", response.headers["Set-Cookie"])


@pytest.mark.parametrize("idle, signed_in", [(IDLE - 1, True), (IDLE, True), (IDLE + 1, False)])
def test_a_portal_session_ends_after_twelve_idle_hours(app, api, idle, signed_in):
    api.register(email="idle@example.com")
    mark_verified(app, "idle@example.com")
    portal = Portal(app.test_client())
    with time_machine.travel(now(), tick=False) as traveller:
        portal.login("idle@example.com")
        session_id = portal.session_id()
        traveller.shift(timedelta(seconds=idle))
        response = portal.get("/account")
        with app.app_context():
            revoked_at = db.session.get(Session, session_id).revoked_at
        if signed_in:
            assert response.status_code == 200 and revoked_at is None
        else:
            redirected_to(response, "/login")
            assert revoked_at is not None  # revoked, not merely forgotten by the browser
            assert portal.session_id() is None


def test_activity_keeps_a_portal_session_alive_past_the_idle_time(app, api):
    api.register(email="busy@example.com")
    mark_verified(app, "busy@example.com")
    portal = Portal(app.test_client())
    with time_machine.travel(now(), tick=False) as traveller:
        portal.login("busy@example.com")
        for _ in range(3):
            traveller.shift(timedelta(seconds=IDLE - 60))
            assert portal.get("/account").status_code == 200


def test_the_idle_time_is_a_setting(make_app, api):
    app = make_app(PORTAL_IDLE_SECONDS="600")
    api = Api(app.test_client())
    api.register(email="short@example.com")
    mark_verified(app, "short@example.com")
    portal = Portal(app.test_client())
    with time_machine.travel(now(), tick=False) as traveller:
        portal.login("short@example.com")
        traveller.shift(timedelta(seconds=601))
        redirected_to(portal.get("/account"), "/login")


def admin_row(app, email: str) -> User | None:
    with app.app_context():
        return db.session.execute(select(User).where(User.email_key == email)).unique().scalar_one_or_none()


def test_create_admin_asks_for_the_password_at_a_hidden_prompt(app, runner, api):
    result = runner.invoke(args=["users", "create-admin", "prompt@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden while typed
    assert admin_row(app, "prompt@example.com").role == "admin"
    api.login(email="prompt@example.com")
    mismatch = runner.invoke(args=["users", "create-admin", "other@example.com"],
                             input=f"{PASSWORD}\nsomething else entirely\n")
    assert mismatch.exit_code != 0 and admin_row(app, "other@example.com") is None


def test_create_admin_reads_the_password_from_stdin(app, runner, api):
    result = runner.invoke(args=["users", "create-admin", "stdin@example.com", "--password-stdin"],
                           input=f"{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    api.login(email="stdin@example.com")
    weak = runner.invoke(args=["users", "create-admin", "weak@example.com", "--password-stdin"], input="password123\n")
    assert weak.exit_code == 1 and admin_row(app, "weak@example.com") is None


def test_promoting_an_existing_account_asks_for_no_password(app, runner, api):
    api.register(email="member@example.com")
    result = runner.invoke(args=["users", "create-admin", "member@example.com"], input="")
    assert result.exit_code == 0 and "promoted" in result.output


@pytest.mark.parametrize("app_env, host, warned", [
    (None, "0.0.0.0", True), ("development", "::", True), (None, "10.1.2.3", True),
    ("production", "0.0.0.0", False), ("test", "0.0.0.0", False), (None, "127.0.0.1", False),
    (None, "::1", False), (None, "localhost", False)])
def test_development_beyond_loopback_is_warned_about(app_env, host, warned):
    assert (exposed_development_warning(app_env, host) is not None) == warned


@pytest.mark.slow
def test_gunicorn_warns_at_start_when_development_listens_on_every_interface(config, tmp_path):
    port = free_port()
    # Development as a new user runs it: no APP_ENV, and so the production argon2 parameters.
    env = {"PATH": os.environ["PATH"], **{k: v for k, v in config.items() if k != "APP_ENV" and "ARGON2" not in k},
           "HOST": "0.0.0.0", "PORT": str(port), "WEB_CONCURRENCY": "1"}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            status = None
            while time.monotonic() < deadline and status != 200:
                try:
                    status = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
                except requests.RequestException:
                    time.sleep(0.1)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    output = Path(log_path).read_text()
    assert status == 200, output[-2000:]
    assert "APP_ENV is unset (development) but the server listens on 0.0.0.0" in output, output[-2000:]
