"""RFC 9457 problem details for every error the JSON surface can give."""
from __future__ import annotations

import json

from flask import Response

from gatehouse.errors import GatehouseError

PROBLEM_TYPE = "urn:gatehouse:problem:"
# RFC 6750 §3: a refused access token says so in the challenge; any other 401 names the scheme.
TOKEN_ERRORS = frozenset({"token_invalid", "token_expired", "token_revoked"})


def problem_body(err: GatehouseError) -> dict:
    body = {
        "type": PROBLEM_TYPE + err.code,
        "title": err.title,
        "status": err.status,
        "detail": err.detail,
        "code": err.code,
    }
    if err.errors:
        body["errors"] = err.errors
    body.update(err.extensions)
    return body


def problem_response(err: GatehouseError) -> Response:
    response = Response(json.dumps(problem_body(err), ensure_ascii=False), status=err.status,
                        mimetype="application/problem+json")
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(int(err.retry_after))
    if err.status == 401:  # RFC 9110 §15.5.2: every 401 carries a challenge
        response.headers["WWW-Authenticate"] = (
            'Bearer realm="gatehouse", error="invalid_token"' if err.code in TOKEN_ERRORS else 'Bearer realm="gatehouse"')
    return response
