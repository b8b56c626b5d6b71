"""Hooks every response goes through: request id, access log line, security headers, error pages."""
from __future__ import annotations

import logging
import re
import sys
import time
import traceback
import uuid

from flask import Flask, current_app, g, render_template, request
from flask.sessions import SecureCookieSessionInterface
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from gatehouse import errors, metrics

log = logging.getLogger("gatehouse")
access_log = logging.getLogger("gatehouse.access")

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# The longest path any request may name: what idempotency_keys.path stores. gunicorn's own request
# line limit (4094 bytes, answered 414 problem+json by gunicorn.conf.py) backs this guard up.
MAX_PATH_LENGTH = 2048

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
HTML_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

HSTS = "max-age=31536000; includeSubDomains"

# werkzeug's own errors, by status, onto the contract's codes.
HTTP_ERRORS = {
    400: errors.BadRequest, 404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType, 429: errors.RateLimited,
}


def failure_fields(exc: BaseException) -> dict:
    """What a log line may say of an exception: its type and where it was raised.

    Never its message or traceback, which may quote SQL, a token or a password.
    """
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    return {"error_type": type(exc).__name__,
            "where": f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}" if frame else None}


def configure_logging(level: str) -> None:
    """One JSON object per line on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                                       rename_fields={"asctime": "time", "levelname": "level"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def wants_html() -> bool:
    if request.blueprint == "portal":
        return True
    if request.blueprint is None:
        best = request.accept_mimetypes.best_match(["application/json", "text/html"])
        return best == "text/html" and request.accept_mimetypes[best] > request.accept_mimetypes["application/json"]
    return False


def error_response(err: errors.GatehouseError):
    """The domain error as an HTML page or in the JSON surface's format, handed over at install()."""
    if wants_html():
        return render_template("errors/error.html", error=err), err.status
    return current_app.extensions["gatehouse.render_problem"](err)


def _held_websocket(response) -> bool:
    """An accepted WebSocket: its "request" lasted as long as the connection, no answer time."""
    return request.headers.get("Upgrade", "").lower() == "websocket" and response.status_code < 400


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed cookie session (the portal's), opened only when the request carries its cookie:
    a bearer request, every API call, skips building the signer (measured: a tenth of a 404's CPU)."""

    def open_session(self, app: Flask, request):
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def install(app: Flask, render_problem) -> None:
    """Request ids, logging, security headers and error handling; `render_problem` renders a domain
    error for JSON callers (the API's problem+json), so the core never imports an adapter."""
    app.extensions["gatehouse.render_problem"] = render_problem
    app.session_interface = CookieSessions()

    @app.before_request
    def start():
        g.started = time.perf_counter()
        sent = request.headers.get("X-Request-Id", "")
        g.request_id = sent if REQUEST_ID_RE.fullmatch(sent) else uuid.uuid4().hex
        if len(request.path) > MAX_PATH_LENGTH:
            raise errors.UriTooLong()

    @app.after_request
    def finish(response):
        headers = response.headers
        headers["X-Request-Id"] = g.get("request_id", "")
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        if "Content-Security-Policy" not in headers:
            html = response.mimetype == "text/html"
            headers["Content-Security-Policy"] = HTML_CSP if html else API_CSP
        if "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"
        if app.config["PRODUCTION"]:  # production is served over https only (RFC 6797)
            headers["Strict-Transport-Security"] = HSTS
        started = g.get("started")
        elapsed = time.perf_counter() - started if started else None
        access_log.info("request", extra={
            "request_id": g.get("request_id"),
            "method": request.method,
            "path": request.path,  # never the query string
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 2) if elapsed is not None else None,
            "remote_addr": request.remote_addr,
        })
        if elapsed is not None and not _held_websocket(response):
            # The URL rule, never the path: a path may hold an id, and every distinct label is a series.
            route = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.http_request_duration.labels(route, metrics.status_class(response.status_code)).observe(elapsed)
        return response

    @app.errorhandler(errors.GatehouseError)
    def domain_error(err):
        return error_response(err)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        kind = HTTP_ERRORS.get(exc.code)
        if kind is None:
            kind = type("HTTPError", (errors.GatehouseError,), {
                "code": "bad_request" if exc.code < 500 else "internal_error",
                "status": exc.code, "title": exc.name, "detail": exc.name + "."})
        err = kind()
        response = error_response(err)
        if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            response = app.make_response(response)
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)  # every pooled connection busy for DATABASE_TIMEOUT
    def database_unavailable(exc: Exception):
        # The database did not answer (down, restarting, connection dropped): a 503 to retry,
        # and the pool has already discarded the broken connection.
        log.error("database unavailable", extra={"request_id": g.get("request_id"), **failure_fields(exc)})
        return error_response(errors.ServiceUnavailable("The database is not answering; try again shortly.",
                                                        retry_after=5))

    @app.errorhandler(Exception)
    def unhandled(exc: Exception):
        log.error("unhandled error", extra={"request_id": g.get("request_id"), **failure_fields(exc)})
        return error_response(errors.InternalError())
