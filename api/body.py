"""The one strict JSON reader every endpoint uses."""
from __future__ import annotations

import json

from flask import request

from gatehouse.config import MAX_BODY_BYTES
from gatehouse.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_DEPTH = 32


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


def _no_duplicates(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def _check(value, depth: int) -> None:
    """The depth limit (text itself is checked by the params step, gatehouse.params)."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels.")
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        _check(item, depth + 1)


# No body at all: distinct from a body that is the JSON value null (a body, and not an object).
NO_BODY = object()


def read_json():
    """The request's JSON value, or NO_BODY when there is none. Errors are domain errors (4xx)."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    data = request.get_data(cache=True)  # at most MAX_BODY_BYTES + 1 bytes of a streamed body
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    if not data:
        return NO_BODY
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The request body is not valid UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise BadRequest(f"The request body is not valid JSON: {reason}.") from None
    _check(value, 0)
    return value
