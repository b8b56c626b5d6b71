"""Fixtures: a fresh app per test on every database leg (SQLite, and PostgreSQL + Redis when present)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gatehouse import create_app
from gatehouse.extensions import db
from tests.servers import Postgres, Redis, postgres_bin, redis_bin

# Fixtures of these modules are available to every test: smtp_sink, serve and server.
pytest_plugins = ["tests.smtp", "tests.live_server"]

PG_BIN = postgres_bin()
REDIS_BIN = redis_bin()
POSTGRES_LEG = PG_BIN is not None and REDIS_BIN is not None
LEGS = ["sqlite", "postgres"] if POSTGRES_LEG else ["sqlite"]

TABLES = ["mfa_challenges", "webauthn_challenges", "passkeys", "recovery_codes", "mfa_totp", "refresh_tokens",
          "sessions", "devices", "one_time_codes", "ai_usage", "outbox", "idempotency_keys", "user_settings",
          "subscriptions", "sign_in_failures", "presence_connections", "rate_limit_windows", "users"]

BASE_CONFIG = {
    "APP_ENV": "test",
    "SECRET_KEY": "test-secret-key-0123456789-abcdefghijklmnop",
    # Cheap hashing for speed; tests/test_passwords.py checks the production parameters once.
    "ARGON2_MEMORY_KIB": "1024",
    "ARGON2_TIME_COST": "1",
    "ARGON2_PARALLELISM": "1",
    "HASH_CONCURRENCY": "8",
    "RATELIMIT_ENABLED": "0",
    # Mail stays queued unless a test delivers it (tests/smtp.py, outbox tests turn delivery on).
    "OUTBOX_INLINE": "0",
    "LOG_LEVEL": "WARNING",
    # A loaded test machine is slow, not broken: the bound's own tests set a short DATABASE_TIMEOUT.
    "DATABASE_TIMEOUT": "30",
}


def _compile_catalogues() -> None:
    """What make does before the tests (translations/%.mo), for runs of pytest on its own."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in (Path(__file__).resolve().parent.parent / "translations").glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            with open(po, "rb") as source, open(mo, "wb") as target:
                write_mo(target, read_po(source))


def pytest_configure(config):
    _compile_catalogues()
    if os.environ.get("GATEHOUSE_REQUIRE_POSTGRES") == "1" and not POSTGRES_LEG:
        raise pytest.UsageError("GATEHOUSE_REQUIRE_POSTGRES=1 but PostgreSQL (initdb, pg_ctl) or redis-server "
                                "is not installed")


def pytest_report_header(config):
    return legs_line()


def legs_line() -> str:
    if POSTGRES_LEG:
        return f"database legs: sqlite, postgres+redis (PostgreSQL from {PG_BIN}, Redis from {REDIS_BIN})"
    return ("database legs: sqlite only - the PostgreSQL + Redis leg is SKIPPED: "
            "initdb/pg_ctl or redis-server not found (apt-get install postgresql redis-server)")


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(legs_line())


@pytest.fixture(scope="session")
def servers():
    """Start PostgreSQL and Redis once for the whole run (when the postgres leg exists)."""
    if not POSTGRES_LEG:
        yield None
        return
    pg, redis = Postgres(PG_BIN), Redis(REDIS_BIN)
    pg.start()
    redis.start()
    try:
        yield {"pg": pg, "redis": redis}
    finally:
        redis.stop()
        pg.stop()


def _migrate(config: dict) -> None:
    from flask_migrate import upgrade

    app = create_app(config)
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "gatehouse.db"
    _migrate({**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{path}"})
    return path


@pytest.fixture(scope="session")
def postgres_urls(servers) -> dict:
    pg = servers["pg"]
    import psycopg

    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE gatehouse")
    url = pg.url("gatehouse")
    _migrate({**BASE_CONFIG, "DATABASE_URL": url})
    return {"DATABASE_URL": url, "REDIS_URL": servers["redis"].url()}


def _reset_postgres(urls: dict) -> None:
    import psycopg
    import redis

    with psycopg.connect(urls["DATABASE_URL"].replace("postgresql://", "postgresql://", 1), autocommit=True) as c:
        c.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    redis.Redis.from_url(urls["REDIS_URL"]).flushdb()


@pytest.fixture(params=LEGS)
def leg(request) -> str:
    return request.param


@pytest.fixture
def make_config(leg, request, tmp_path):
    """A function giving this test's settings, with overrides (all values as environment strings)."""
    if leg == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "gatehouse.db"
        shutil.copyfile(template, path)
        base = {**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{path}"}
    else:
        urls = request.getfixturevalue("postgres_urls")
        _reset_postgres(urls)
        base = {**BASE_CONFIG, **urls}

    def make(**overrides: str) -> dict:
        return {**base, **{k: str(v) for k, v in overrides.items()}}

    return make


@pytest.fixture
def config(make_config, request) -> dict:
    """This test's settings. A test marked `mail` (overrides as the marker's keywords) sends its mail to
    the SMTP sink of tests/smtp.py, delivered when the test says."""
    marker = request.node.get_closest_marker("mail")
    if marker is None:
        return make_config()
    from tests.smtp import mail_settings

    return make_config(**mail_settings(request.getfixturevalue("smtp_sink")), **marker.kwargs)


def close(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(config):
    app = create_app(config)
    yield app
    close(app)


@pytest.fixture
def make_app(make_config):
    """Another app on this test's database, with settings overridden; closed after the test."""
    apps = []

    def make(**overrides):
        app = create_app(make_config(**overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        close(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def api(client):
    from tests.actions import Api

    return Api(client)


@pytest.fixture
def events(app):
    """Every event the app publishes during the test, as (user_id, event, data)."""
    from gatehouse.realtime.bus import bus

    seen = []
    with app.app_context():
        unsubscribe = bus().subscribe(lambda user_id, event, data: seen.append((user_id, event, data)))
    yield seen
    unsubscribe()


@pytest.fixture
def clock(request):
    """Time stands still at the test module's T0 until the test moves it (move_to, shift)."""
    import time_machine

    with time_machine.travel(request.module.T0, tick=False) as traveller:
        yield traveller
