"""RFC 9457 problem details for every error the JSON surface can give."""
from __future__ import annotations

import json

from flask import Response

from gatehouse.errors import GatehouseError

PROBLEM_TYPE = "urn:gatehouse:problem:"


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
    return response
