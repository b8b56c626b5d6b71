"""Configuration from the environment (CONTRACT §1): defaults, refusals, the development secret."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gatehouse.config import ConfigError, database_uri, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_need_no_variable(tmp_path):
    config = load_config({}, tmp_path)
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'gatehouse.db'}"
    assert config["ACCESS_TOKEN_TTL"] == 900
    assert config["REFRESH_TOKEN_TTL"] == 2592000
    assert config["RESET_CODE_TTL"] == 600
    assert config["IDEMPOTENCY_TTL"] == 86400
    assert config["PASSWORD_MIN_LENGTH"] == 12
    assert config["TRUSTED_PROXIES"] == 0
    assert config["REDIS_URL"] is None
    assert config["OUTBOX_INLINE"] is True
    assert (config["ARGON2_MEMORY_KIB"], config["ARGON2_TIME_COST"], config["ARGON2_PARALLELISM"]) == (19456, 2, 1)
    assert (config["WS_CONNECTIONS"], config["WS_CONNECTIONS_PER_USER"]) == (5000, 16)


def test_development_secret_is_generated_once_and_private(tmp_path):
    first = load_config({}, tmp_path)["SECRET_KEY"]
    second = load_config({}, tmp_path)["SECRET_KEY"]
    assert first == second and len(first) >= 48
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600


@pytest.mark.parametrize("url", ["postgres://u:p@db:5432/app", "postgresql://u:p@db:5432/app"])
def test_both_postgres_url_schemes_use_psycopg3(url, tmp_path):
    assert database_uri(url, tmp_path) == "postgresql+psycopg://u:p@db:5432/app"


@pytest.mark.parametrize("environ, named", [
    ({"APP_ENV": "production", "MAIL_SERVER": "smtp"}, "SECRET_KEY"),
    ({"APP_ENV": "production", "SECRET_KEY": "k" * 40}, "MAIL_SERVER"),
    ({"APP_ENV": "production", "SECRET_KEY": "k" * 40, "MAIL_SERVER": "smtp", "RATELIMIT_ENABLED": "0"},
     "RATELIMIT_ENABLED"),
    ({"ACCESS_TOKEN_TTL": "0"}, "ACCESS_TOKEN_TTL"),
    ({"REFRESH_TOKEN_TTL": "-5"}, "REFRESH_TOKEN_TTL"),
    ({"RESET_CODE_TTL": "ten"}, "RESET_CODE_TTL"),
    ({"IDEMPOTENCY_TTL": "1.5"}, "IDEMPOTENCY_TTL"),
    ({"PASSWORD_MIN_LENGTH": "7"}, "PASSWORD_MIN_LENGTH"),
    ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES"),
    ({"ARGON2_MEMORY_KIB": "8192"}, "ARGON2_MEMORY_KIB"),
    ({"ARGON2_TIME_COST": "1"}, "ARGON2_TIME_COST"),
    ({"APP_ENV": "staging"}, "APP_ENV"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"DEFAULT_REGION": "XX"}, "DEFAULT_REGION"),
    ({"RATELIMIT_ENABLED": "maybe"}, "RATELIMIT_ENABLED"),
    ({"WS_CONNECTIONS_PER_USER": "0"}, "WS_CONNECTIONS_PER_USER"),
    ({"WS_CONNECTIONS": "many"}, "WS_CONNECTIONS"),
])
def test_invalid_settings_are_refused_naming_the_variable(environ, named, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(environ, tmp_path)
    assert named in str(info.value)


def test_password_min_length_boundary(tmp_path):
    assert load_config({"PASSWORD_MIN_LENGTH": "8"}, tmp_path)["PASSWORD_MIN_LENGTH"] == 8
    assert load_config({"PASSWORD_MIN_LENGTH": "9"}, tmp_path)["PASSWORD_MIN_LENGTH"] == 9
    with pytest.raises(ConfigError):
        load_config({"PASSWORD_MIN_LENGTH": "7"}, tmp_path)


def test_production_accepts_a_complete_configuration(tmp_path):
    config = load_config({"APP_ENV": "production", "SECRET_KEY": "k" * 40, "MAIL_SERVER": "smtp.example.com"},
                         tmp_path)
    assert config["PRODUCTION"] and config["SESSION_COOKIE_SECURE"]
    assert config["OUTBOX_INLINE"] is False


def _flask(args, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "SECRET", "MAIL_", "DATABASE"))}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_production_without_secret_key_exits_with_one_line():
    result = _flask(["users", "--help"], {"APP_ENV": "production", "MAIL_SERVER": "smtp.example.com"})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["gatehouse: configuration error: SECRET_KEY must be set when APP_ENV=production"]


PROD = {"APP_ENV": "production", "SECRET_KEY": "k" * 40, "MAIL_SERVER": "smtp.example.com"}


def test_passkeys_default_to_the_public_url(tmp_path):
    config = load_config({}, tmp_path)
    assert (config["WEBAUTHN_RP_ID"], config["WEBAUTHN_ORIGINS"]) == ("127.0.0.1", ["http://127.0.0.1:8000"])
    config = load_config({"PUBLIC_URL": "https://Auth.Example.com/"}, tmp_path)
    assert (config["WEBAUTHN_RP_ID"], config["WEBAUTHN_ORIGINS"]) == ("auth.example.com", ["https://auth.example.com"])
    config = load_config({**PROD, "PUBLIC_URL": "https://auth.example.com", "WEBAUTHN_RP_ID": "example.com",
                          "WEBAUTHN_ORIGINS": "https://auth.example.com, https://example.com"}, tmp_path)
    assert config["WEBAUTHN_ORIGINS"] == ["https://auth.example.com", "https://example.com"]
    assert load_config({}, tmp_path)["REAUTH_MAX_AGE"] == 600


@pytest.mark.parametrize("environ", [
    {"WEBAUTHN_RP_ID": "example.com"},  # the default origin 127.0.0.1 is not on it
    {"PUBLIC_URL": "https://auth.example.com", "WEBAUTHN_ORIGINS": "https://evil.example.org"},
    {"PUBLIC_URL": "https://auth.example.com", "WEBAUTHN_RP_ID": "other.example.com"},
    {"WEBAUTHN_ORIGINS": "not a url"},
    {**PROD, "PUBLIC_URL": "http://auth.example.com"},  # production: https only (loopback aside)
])
def test_inconsistent_passkey_settings_refuse_to_start(environ, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(environ, tmp_path)
    assert "WEBAUTHN" in str(info.value) or "PUBLIC_URL" in str(info.value)
