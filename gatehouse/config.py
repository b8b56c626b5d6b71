"""Environment -> one validated configuration; refuses an unsafe production setup at start."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from gatehouse.instance import owner_only, prepare_sqlite, private_directory

PRODUCTION = "production"
ENVIRONMENTS = ("development", "production", "test")

# OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1 is the lowest accepted profile.
ARGON2_FLOOR = {"ARGON2_MEMORY_KIB": 19456, "ARGON2_TIME_COST": 2, "ARGON2_PARALLELISM": 1}

MAX_BODY_BYTES = 64 * 1024
DEFAULT_ISSUER = "gatehouse"
# Where passkeys live when PUBLIC_URL is unset (CONTRACT §9).
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """A setting that makes the process refuse to start; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    kind: str = "str"  # str | positive_int | non_negative_int | bool


SETTINGS = (
    Setting("APP_ENV", "development"),
    Setting("SECRET_KEY", None),
    Setting("DATABASE_URL", None),
    Setting("DATABASE_TIMEOUT", "5", "positive_int"),
    Setting("REDIS_URL", None),
    Setting("TRUSTED_PROXIES", "0", "non_negative_int"),
    Setting("ACCESS_TOKEN_TTL", "900", "positive_int"),
    Setting("REFRESH_TOKEN_TTL", "2592000", "positive_int"),
    Setting("RESET_CODE_TTL", "600", "positive_int"),
    Setting("VERIFY_CODE_TTL", "86400", "positive_int"),
    Setting("EMAIL_CHANGE_TTL", "3600", "positive_int"),
    Setting("SECURITY_EVENTS_DAYS", "365", "positive_int"),
    Setting("IDEMPOTENCY_TTL", "86400", "positive_int"),
    Setting("CODE_MAILS_PER_HOUR", "5", "positive_int"),
    Setting("CODE_WRONG_PER_DAY", "10", "positive_int"),
    Setting("PASSWORD_MIN_LENGTH", "12", "positive_int"),
    Setting("ARGON2_MEMORY_KIB", "19456", "positive_int"),
    Setting("ARGON2_TIME_COST", "2", "positive_int"),
    Setting("ARGON2_PARALLELISM", "1", "positive_int"),
    Setting("HASH_CONCURRENCY", None, "positive_int"),
    Setting("HASH_QUEUE_TIMEOUT_MS", "2000", "positive_int"),
    Setting("DEFAULT_REGION", "US"),
    Setting("RATELIMIT_ENABLED", "1", "bool"),
    Setting("SIGNIN_FREE_FAILURES", "10", "positive_int"),
    Setting("SIGNIN_BACKOFF_BASE", "30", "positive_int"),
    Setting("SIGNIN_BACKOFF_MAX", "3600", "positive_int"),
    Setting("SIGNIN_LOCKOUT_FAILURES", "100", "positive_int"),
    Setting("OUTBOX_INLINE", None, "bool"),
    Setting("OUTBOX_LEASE_SECONDS", "300", "positive_int"),
    Setting("OUTBOX_POLL_SECONDS", "5", "positive_int"),
    Setting("OUTBOX_MAX_ATTEMPTS", "10", "positive_int"),
    Setting("MAIL_SERVER", None),
    Setting("MAIL_PORT", "25", "positive_int"),
    Setting("MAIL_USE_TLS", "0", "bool"),
    Setting("MAIL_USE_SSL", "0", "bool"),
    Setting("MAIL_USERNAME", None),
    Setting("MAIL_PASSWORD", None),
    Setting("MAIL_DEFAULT_SENDER", "Gatehouse <no-reply@localhost>"),
    Setting("MAIL_TIMEOUT", "30", "positive_int"),
    Setting("JWT_PRIVATE_KEY", None),
    Setting("PUBLIC_URL", None),
    Setting("JWT_AUDIENCE", "gatehouse"),
    Setting("WEB_CONCURRENCY", None, "positive_int"),
    Setting("WS_CONNECTIONS", "5000", "positive_int"),
    Setting("WS_CONNECTIONS_PER_USER", "16", "positive_int"),
    Setting("WS_TICKET_TTL", "60", "positive_int"),
    Setting("WS_PING_SECONDS", "25", "positive_int"),
    Setting("WS_EXPIRY_WARNING_SECONDS", "60", "positive_int"),
    Setting("WS_RECHECK_SECONDS", "30", "positive_int"),
    Setting("WS_IDLE_SECONDS", "300", "positive_int"),
    Setting("WS_ACTIVE_SECONDS", "15", "positive_int"),
    Setting("WS_FRAMES_PER_MINUTE", "120", "positive_int"),
    Setting("PORTAL_IDLE_SECONDS", "43200", "positive_int"),
    Setting("METRICS_TOKEN", None),
    Setting("LOG_LEVEL", "INFO"),
    Setting("WEBAUTHN_RP_ID", None),
    Setting("WEBAUTHN_ORIGINS", None),
    Setting("REAUTH_MAX_AGE", "600", "positive_int"),
)

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def _parse(setting: Setting, raw: str):
    if setting.kind == "str":
        return raw
    if setting.kind == "bool":
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigError(f"{setting.name} must be 1 or 0 (got {raw!r})")
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{setting.name} must be a whole number (got {raw!r})") from None
    if setting.kind == "positive_int" and value < 1:
        raise ConfigError(f"{setting.name} must be a positive whole number (got {raw!r})")
    if setting.kind == "non_negative_int" and value < 0:
        raise ConfigError(f"{setting.name} must be zero or a positive whole number (got {raw!r})")
    return value


def database_uri(url: str | None, instance_path: Path) -> str:
    """Map DATABASE_URL onto an SQLAlchemy URI; postgres:// and postgresql:// both use psycopg 3."""
    if not url:
        return f"sqlite:///{instance_path / 'gatehouse.db'}"
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("sqlite:"):
        return url
    raise ConfigError("DATABASE_URL must be a postgres://, postgresql:// or sqlite: URL")


def development_secret(instance_path: Path) -> str:
    """The generated development secret, created once with a CSPRNG and readable by the owner only."""
    path = instance_path / "secret_key"
    private_directory(instance_path)
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        owner_only(path)
        return key
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def _signing_key(pem: str | None):
    """The asymmetric access-token key of JWT_PRIVATE_KEY, or None for HS256 from SECRET_KEY."""
    if not pem:
        return None
    from gatehouse.security import keys

    try:
        return keys.load(pem)
    except keys.UnusableKey as exc:
        raise ConfigError(f"JWT_PRIVATE_KEY is unusable: {exc}") from None


def _origin(url: str, name: str) -> tuple[str, str]:
    """(origin, host) of an absolute http(s) URL; ConfigError naming `name` otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} must hold absolute http(s) URLs (got {url!r})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must hold absolute http(s) URLs (got {url!r})")
    host = parts.hostname.lower()
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}", host


def webauthn_party(values: dict, production: bool) -> tuple[str, list[str]]:
    """The relying-party id and allowed origins of passkeys (WEBAUTHN_RP_ID, WEBAUTHN_ORIGINS, else
    from PUBLIC_URL). Every origin's host must be the RP id or below it (WebAuthn §5.1.4), else no
    passkey could ever work; in production every origin must also be https (browsers allow passkeys
    on plain http for loopback only)."""
    public_origin, public_host = _origin(values["PUBLIC_URL"] or DEFAULT_PUBLIC_URL, "PUBLIC_URL")
    rp_id = (values["WEBAUTHN_RP_ID"] or public_host).strip().lower()
    raw = [o for o in (values["WEBAUTHN_ORIGINS"] or "").split(",") if o.strip()]
    origins = [_origin(o, "WEBAUTHN_ORIGINS") for o in raw] or [(public_origin, public_host)]
    for origin, host in origins:
        if host != rp_id and not host.endswith("." + rp_id):
            raise ConfigError(f"WEBAUTHN_ORIGINS: {origin} is not on the relying party id {rp_id!r} "
                              "(WEBAUTHN_RP_ID must be the origin's host or a parent domain of it)")
        if production and not origin.startswith("https://") and host not in LOOPBACK_HOSTS:
            raise ConfigError(f"WEBAUTHN_ORIGINS: {origin} must be https when APP_ENV=production")
    return rp_id, [origin for origin, _ in origins]


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "[::1]"})


def exposed_development_warning(app_env: str | None, host: str) -> str | None:
    """The start-up warning for a development configuration listening beyond loopback: development
    prints one-time codes to the console and generates its own secret, so it must not face a network."""
    if (app_env or "development") != "development" or host in LOOPBACK_HOSTS or host.startswith("127."):
        return None
    named = "unset" if not app_env else repr(app_env)
    return (f"gatehouse: APP_ENV is {named} (development) but the "
            f"server listens on {host}, beyond loopback: development prints one-time codes to the console "
            "and generates its own secret. Set APP_ENV=production for any deployment.")


def load_config(environ: Mapping[str, str], instance_path: Path) -> dict:
    """Read every setting of the contract from ``environ`` and return Flask config keys."""
    values = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name)
        if raw is None or (raw == "" and setting.kind != "str"):
            raw = setting.default
        values[setting.name] = None if raw is None else _parse(setting, raw)

    env = values["APP_ENV"]
    if env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)} (got {env!r})")
    production = env == PRODUCTION

    if not values["SECRET_KEY"]:
        if production:
            raise ConfigError("SECRET_KEY must be set when APP_ENV=production")
        values["SECRET_KEY"] = development_secret(instance_path)
    elif production and len(values["SECRET_KEY"]) < 32:
        raise ConfigError("SECRET_KEY must be at least 32 characters when APP_ENV=production")
    if production and not values["MAIL_SERVER"]:
        raise ConfigError("MAIL_SERVER must be set when APP_ENV=production")
    if production and not values["RATELIMIT_ENABLED"]:
        raise ConfigError("RATELIMIT_ENABLED=0 is refused when APP_ENV=production")
    if values["SIGNIN_LOCKOUT_FAILURES"] <= values["SIGNIN_FREE_FAILURES"]:
        raise ConfigError("SIGNIN_LOCKOUT_FAILURES must be greater than SIGNIN_FREE_FAILURES")
    if values["SIGNIN_BACKOFF_MAX"] < values["SIGNIN_BACKOFF_BASE"]:
        raise ConfigError("SIGNIN_BACKOFF_MAX must be at least SIGNIN_BACKOFF_BASE")
    if values["PASSWORD_MIN_LENGTH"] < 8:
        raise ConfigError("PASSWORD_MIN_LENGTH must be at least 8")
    if env != "test":
        for name, floor in ARGON2_FLOOR.items():
            if values[name] < floor:
                raise ConfigError(f"{name} must be at least {floor} (OWASP argon2id floor)")
    region = (values["DEFAULT_REGION"] or "").upper()
    from gatehouse.regions import REGIONS  # deferred: babel data loads only when configuring

    if region not in REGIONS:
        raise ConfigError(f"DEFAULT_REGION must be a supported ISO 3166-1 alpha-2 code (got {region!r})")
    values["DEFAULT_REGION"] = region
    if values["OUTBOX_INLINE"] is None:
        values["OUTBOX_INLINE"] = not production
    values["JWT_SIGNING_KEY"] = _signing_key(values["JWT_PRIVATE_KEY"])
    public_url = (values["PUBLIC_URL"] or "").rstrip("/")
    if public_url and not public_url.startswith(("https://", "http://")):
        raise ConfigError(f"PUBLIC_URL must be an http(s) URL such as https://auth.example.com (got {public_url!r})")
    values["PUBLIC_URL"] = public_url or None
    # The access tokens' `iss` (RFC 9068): the service's public URL, or a fixed name without one.
    values["TOKEN_ISSUER"] = public_url or DEFAULT_ISSUER
    if not values["JWT_AUDIENCE"]:
        raise ConfigError("JWT_AUDIENCE must not be empty")
    values["WEBAUTHN_RP_ID"], values["WEBAUTHN_ORIGINS"] = webauthn_party(values, production)
    if values["HASH_CONCURRENCY"] is None:
        workers = values["WEB_CONCURRENCY"] or 1
        values["HASH_CONCURRENCY"] = max(1, (os.cpu_count() or 1) // workers)

    uri = database_uri(values["DATABASE_URL"], instance_path)
    prepare_sqlite(uri, instance_path)  # migrations, the app and the CLI all come through here
    config = dict(values)
    config.update(
        ENV_NAME=env,
        PRODUCTION=production,
        SQLALCHEMY_DATABASE_URI=uri,
        # One byte more than allowed: a streamed (chunked) body is cut there by werkzeug, and a read
        # that reaches it is known to be too large (api.body), instead of silently truncated.
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES + 1,
        MAIL_SUPPRESS_SEND=False,
        MAIL_CONSOLE=not values["MAIL_SERVER"],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        # In production the cookie is a __Host- cookie (RFC 6265bis): Secure, Path=/ and no Domain,
        # so no sibling or parent domain can set or shadow it.
        SESSION_COOKIE_NAME="__Host-gatehouse" if production else "session",
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        JSON_SORT_KEYS=False,
    )
    return config
