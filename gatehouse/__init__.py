"""Gatehouse: the authentication and users service. create_app builds one configured application."""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Mapping

from dotenv import load_dotenv
from flask import Flask
from flask_babel import get_locale
from werkzeug.middleware.proxy_fix import ProxyFix

from gatehouse import web
from gatehouse.config import ConfigError, load_config
from gatehouse.database import engine_options, install_watchdog, redis_client, redis_ready
from gatehouse.extensions import babel, csrf, db, jwt, limiter, mail, migrate, sock
from gatehouse.realtime.bus import EventBus, install_after_commit
from gatehouse.security import argon2_native
from gatehouse.security.passwords import Hasher
from gatehouse.security.tokens import Sealer, derive_key

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, str] | None = None) -> Flask:
    """Build the app from environment-style settings (CONTRACT §1); None reads the environment and .env."""
    app = Flask(__name__, instance_path=str(ROOT / "instance"), template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    if config is None:
        load_dotenv(ROOT / ".env")
        try:
            settings = load_config(os.environ, Path(app.instance_path))
        except ConfigError as exc:
            print(f"gatehouse: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        web.configure_logging(settings["LOG_LEVEL"])
    else:
        settings = load_config(config, Path(app.instance_path))
    app.config.update(settings)
    _configure_extensions(app)
    _register_surfaces(app)
    return app


def _configure_extensions(app: Flask) -> None:
    config = app.config
    secret = config["SECRET_KEY"]
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(config["SQLALCHEMY_DATABASE_URI"],
                                                         config["DATABASE_TIMEOUT"])
    config.update(
        JWT_SECRET_KEY=derive_key(secret, "access-token-hs256"),
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=config["ACCESS_TOKEN_TTL"]),
        JWT_ENCODE_NBF=False,
        JWT_ENCODE_ISSUER=config["TOKEN_ISSUER"],
        JWT_DECODE_ISSUER=config["TOKEN_ISSUER"],
        JWT_ENCODE_AUDIENCE=config["JWT_AUDIENCE"],
        JWT_DECODE_AUDIENCE=config["JWT_AUDIENCE"],
        JWT_COOKIE_CSRF_PROTECT=False,  # tokens travel only in the Authorization header
    )
    signing = config["JWT_SIGNING_KEY"]
    if signing is not None:  # JWT_PRIVATE_KEY: its algorithm only, verified with its public half
        config.update(JWT_PRIVATE_KEY=signing.private_key, JWT_PUBLIC_KEY=signing.public_key,
                      JWT_ALGORITHM=signing.algorithm, JWT_DECODE_ALGORITHMS=[signing.algorithm])
    if config["TRUSTED_PROXIES"]:
        hops = config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    db.init_app(app)
    with app.app_context():
        install_watchdog(db.engine, config["DATABASE_TIMEOUT"])
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    jwt.init_app(app)
    mail.init_app(app)
    csrf.init_app(app)
    sock.init_app(app)
    _configure_limiter(app)
    _configure_languages(app)

    app.extensions["gatehouse.hasher"] = Hasher(
        memory_kib=config["ARGON2_MEMORY_KIB"], time_cost=config["ARGON2_TIME_COST"],
        parallelism=config["ARGON2_PARALLELISM"], concurrency=config["HASH_CONCURRENCY"],
        queue_timeout=config["HASH_QUEUE_TIMEOUT_MS"] / 1000, native=argon2_native.load())
    app.extensions["gatehouse.sealer"] = Sealer(derive_key(secret, "at-rest-encryption"))
    app.extensions["gatehouse.hmac_key"] = derive_key(secret, "keyed-hashes")
    app.extensions["gatehouse.bus"] = EventBus()
    install_after_commit(db.session)
    if config["OUTBOX_INLINE"]:
        from gatehouse.outbox.inline import EXTENSION, InlineDelivery

        app.extensions[EXTENSION] = InlineDelivery(app)
    if config["REDIS_URL"]:
        client = redis_client(config["REDIS_URL"])
        app.extensions["gatehouse.redis"] = client
        app.extensions["gatehouse.redis_ready"] = lambda: redis_ready(client)
    from gatehouse.realtime import hub  # deferred: the services need the models
    from gatehouse.services import sessions

    hub.install(app, hub.SessionChecks(live_roles=sessions.live_roles, renewal=sessions.renewal))


def _configure_languages(app: Flask) -> None:
    """flask-babel over translations/ (compiled by make); the portal decides each page's language."""
    app.config.update(BABEL_DEFAULT_LOCALE="en", BABEL_DEFAULT_TIMEZONE="UTC",
                      BABEL_TRANSLATION_DIRECTORIES=str(ROOT / "translations"))
    babel.init_app(app)

    @app.context_processor
    def page_language() -> dict:  # <html lang> of every page, error pages included
        return {"page_language": str(get_locale())}

    @app.after_request
    def spoken(response):
        """Pages depend on the language (CONTRACT §12); JSON answers do not."""
        if response.mimetype == "text/html":
            response.headers["Content-Language"] = str(get_locale())
            response.vary.add("Accept-Language")
            response.vary.add("Cookie")
        return response


def _configure_limiter(app: Flask) -> None:
    """A moving window shared by every process: in Redis when configured (while Redis fails,
    limiting goes on in process memory: never open, never a 500), else in the app's own database
    (gatehouse.limits_storage). RATELIMIT_ENABLED is flask-limiter's own switch as well as ours."""
    from gatehouse import limits_storage  # registers the database:// storage scheme

    redis_url = app.config["REDIS_URL"]
    app.config.update(
        RATELIMIT_STORAGE_URI=redis_url or f"{limits_storage.SCHEME}://",
        RATELIMIT_STORAGE_OPTIONS={"socket_timeout": 1, "socket_connect_timeout": 1} if redis_url else {},
        RATELIMIT_STRATEGY="moving-window",
        RATELIMIT_HEADERS_ENABLED=True,
        # flask-limiter would send Retry-After on every response; only a 429 carries it here.
        RATELIMIT_HEADER_RETRY_AFTER="X-RateLimit-Reset-After",
        # Without Redis the database is the storage: when it fails the request fails too (503).
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=bool(redis_url),
        RATELIMIT_SWALLOW_ERRORS=False,
        RATELIMIT_KEY_PREFIX="gatehouse",
    )
    # The one limiter serves every app this process creates (tests create many): a storage that
    # failed for an earlier app says nothing about this app's, which init_app connects afresh.
    limiter._storage_dead = False
    limiter._in_memory_fallback_enabled = bool(redis_url)
    limiter.init_app(app)


def _register_surfaces(app: Flask) -> None:
    import api
    import portal
    from api.problems import problem_response
    from gatehouse.cli import register as register_cli
    from gatehouse.limits import install as install_limits

    from gatehouse import models  # noqa: F401  (tables known to Alembic and the ORM)

    web.install(app, problem_response)
    install_limits(app)
    csrf.exempt(api.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(portal.bp)
    register_cli(app)
