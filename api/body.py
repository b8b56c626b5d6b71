"""The one strict JSON reader every endpoint uses."""
from __future__ import annotations

import json
import re

from flask import request

from gatehouse.config import MAX_BODY_BYTES
from gatehouse.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

MAX_DEPTH = 32
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


def _no_duplicates(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def _check(value, path: str, depth: int) -> None:
    """Depth limit, and no NUL or lone surrogate anywhere (they break databases and logs)."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, str):
        if _BAD_CHARS.search(value):
            field = path or "body"
            raise ValidationFailed(errors=[{"field": field, "message": "must not contain NUL or lone surrogates"}])
    elif isinstance(value, dict):
        for key, item in value.items():
            if _BAD_CHARS.search(key):
                raise ValidationFailed(errors=[{"field": path or "body",
                                                "message": "keys must not contain NUL or lone surrogates"}])
            _check(item, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}.{index}" if path else str(index), depth + 1)


def read_json() -> dict | list | None:
    """The request's JSON body, or None when there is none. Errors are domain errors (4xx)."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    data = request.get_data(cache=True)  # at most MAX_BODY_BYTES + 1 bytes of a streamed body
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    if not data:
        return None
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
    _check(value, "", 0)
    return value
