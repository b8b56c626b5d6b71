"""/openapi.json, generated from the operations declared with api.routing.endpoint."""
from __future__ import annotations

import re
from functools import lru_cache

from pydantic.json_schema import models_json_schema

from api.routing import OPERATIONS

REF = "#/components/schemas/{model}"
PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable machine-readable error code."},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
# Problems with RFC 9457 extension members, and the operations (rule, method, status) that answer them.
MFA_REQUIRED = {
    "allOf": [{"$ref": "#/components/schemas/Problem"}, {
        "type": "object",
        "description": "code mfa_required: the password was right; finish at /auth/mfa/verify.",
        "required": ["mfaToken", "methods", "expiresAt"],
        "properties": {
            "mfaToken": {"type": "string", "description": "Opaque, single-use, 5 minutes."},
            "methods": {"type": "array", "items": {"enum": ["totp", "recovery_code", "passkey"]}},
            "expiresAt": {"type": "string", "format": "date-time"},
        }}],
}
EXTENDED_PROBLEMS = {("/auth/login", "POST", 401): "MfaRequiredProblem"}
FRESH = ("Needs a fresh sign-in: auth_time at most REAUTH_MAX_AGE seconds old and, for an account with a "
         "second factor, aal 2; otherwise 401 reauthentication_required (POST /auth/reauthenticate).")
ERROR_TEXT = {
    400: "Malformed request", 401: "Missing, invalid, expired or revoked credentials", 403: "Forbidden",
    404: "Not found", 409: "Conflict", 412: "Precondition failed", 413: "Body over 64 KiB",
    414: "Path over 2048 characters (or a request line over gunicorn's limit)",
    415: "Body is not JSON", 422: "Validation failed", 429: "Rate limited", 500: "Internal error",
    503: "Service unavailable (the database is not answering, or too many sign-ins at once)",
}
# Statuses any operation can answer: a malformed or oversized request, a rate limit, a database
# that does not answer, a failure of our own.
EVERY_OPERATION = (400, 413, 414, 415, 422, 429, 500, 503)
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "required": True,
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}


WRITES = ("POST", "PATCH", "DELETE", "PUT")


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def _query_parameters(model) -> list[dict]:
    """An empty value counts as absent (gatehouse.params.parse_query): optional ones allow it."""
    if model is None:
        return []
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             **({} if name in required else {"allowEmptyValue": True}),
             "schema": _query_value(prop)}
            for name, prop in schema["properties"].items()]


def _query_value(prop: dict) -> dict:
    """A query string carries text or nothing, never null: `X | None` is X (absent is None)."""
    prop = {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
    branches = [branch for branch in prop.get("anyOf", ()) if branch != {"type": "null"}]
    if "anyOf" in prop and len(branches) == 1:
        del prop["anyOf"]
        prop.update(branches[0])
    return prop


def _problem(status: int, extended: str | None = None) -> dict:
    entry = {"description": ERROR_TEXT.get(status, "Error")}
    schema = {"$ref": "#/components/schemas/Problem"}
    if extended:  # a problem with RFC 9457 extension members, besides the plain one
        schema = {"oneOf": [schema, {"$ref": f"#/components/schemas/{extended}"}]}
    entry["content"] = {"application/problem+json": {"schema": schema}}
    if status in (429, 503):
        entry["headers"] = RETRY_AFTER
    return entry


@lru_cache(maxsize=1)
def document() -> dict:
    models = []
    for op in OPERATIONS:
        if op.body is not None:
            models.append((op.body, "validation"))
        models.extend((model, "serialization") for model in op.responses.values() if model is not None)
    keys, definitions = models_json_schema(list(dict.fromkeys(models)), ref_template=REF, by_alias=True)
    schemas = dict(definitions.get("$defs", {}))
    schemas["Problem"] = PROBLEM
    schemas["MfaRequiredProblem"] = MFA_REQUIRED

    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        path = _path(op.rule)
        responses = {}
        for status, model in op.responses.items():
            entry = {"description": "Success" if status < 400 else ERROR_TEXT.get(status, "Error")}
            if model is not None:
                entry["content"] = {"application/json": {"schema": keys[(model, "serialization")]}}
            responses[str(status)] = entry
        statuses = {*EVERY_OPERATION, *op.extra_errors}
        if op.method in WRITES:
            statuses.add(409)  # idempotency_key_in_progress
        if op.auth:
            statuses.add(401)
        for status in sorted(statuses):
            responses.setdefault(str(status), _problem(status, EXTENDED_PROBLEMS.get((op.rule, op.method, status))))
        operation = {
            "operationId": op.endpoint.split(".", 1)[1],
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                           for name in re.findall(r"{([^}]+)}", path)],
            "responses": responses,
        }
        if op.fresh:
            operation["description"] = FRESH
        operation["parameters"] += _query_parameters(op.query)
        operation["parameters"] += [{"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
                                    for name in op.headers]
        if op.method in WRITES:
            operation["parameters"].append({
                "name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}})
        if op.body is not None:
            # A body of optional fields only may be left out (read_json: no body is {}).
            required = any(field.is_required() for field in op.body.model_fields.values())
            operation["requestBody"] = {"required": required, "content": {
                "application/json": {"schema": keys[(op.body, "validation")]}}}
        if op.auth:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[op.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {"title": "Gatehouse", "version": "1.0.0",
                 "description": "Authentication and users service: identity, credentials, sessions, "
                                "devices, profile and preferences."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
