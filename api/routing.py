"""The one way a JSON endpoint is declared: its rule, body schema and responses.

Each declaration registers the Flask route and an `Operation` from which /openapi.json is
generated, so the document is always the schemas that really validate requests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import wraps
from typing import Callable

from flask import Blueprint, Response, g, request
from pydantic import BaseModel

from api.body import NO_BODY, read_json
from api.idempotency import idempotent
from api.limits import limited
from gatehouse.params import Empty, Params, parse, parse_query


@dataclass
class Operation:
    rule: str
    method: str
    endpoint: str
    summary: str
    body: type[Params] | None
    responses: dict[int, type[BaseModel] | None]
    auth: bool
    tag: str
    query: type[Params] | None = None
    extra_errors: tuple[int, ...] = field(default=())
    headers: tuple[str, ...] = field(default=())  # request headers the operation reads (documented)
    fresh: bool = False


OPERATIONS: list[Operation] = []


def reply(model: BaseModel | None, status: int = 200, headers: dict | None = None) -> Response:
    body = model.model_dump_json(by_alias=True) if model is not None else ""
    response = Response(body, status=status, mimetype="application/json" if model is not None else None)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def endpoint(bp: Blueprint, rule: str, method: str, *, summary: str, responses: dict,
             body: type[Params] | None = None, query: type[Params] | None = None, auth: bool = False,
             errors: tuple[int, ...] = (), headers: tuple[str, ...] = (), fresh: bool = False) -> Callable:
    """Declare a JSON endpoint. The view gets `params` (the parsed body) when `body` is given,
    and `query` (the parsed query string, unknown parameters refused) when `query` is given;
    with `auth`, `g.auth` holds the caller (see api.auth); `fresh` (implies `auth`) also needs a recent
    sign-in at the account's level (gatehouse.services.stepup). Writes honour Idempotency-Key
    (api.idempotency); rules listed in api.limits get their rate limits."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def handler(**kwargs):
            if auth:
                from api.auth import authenticate, require_fresh  # api.auth needs the services, which need the app

                g.auth = authenticate()
                if fresh:
                    require_fresh()

            def run():
                if query is not None:
                    kwargs["query"] = parse_query(query, request.args.to_dict(flat=False))
                data = read_json()
                if body is not None:
                    kwargs["params"] = parse(body, {} if data is NO_BODY else data)
                elif data is not NO_BODY:
                    parse(Empty, data)
                return view(**kwargs)

            return idempotent(run)  # after authentication: the caller is part of the key

        bp.add_url_rule(rule, view.__name__, limited(rule, handler), methods=[method])
        OPERATIONS.append(Operation(rule=rule, method=method, endpoint=f"{bp.name}.{view.__name__}",
                                    summary=summary, body=body, query=query, responses=responses, auth=auth,
                                    tag=bp.name, extra_errors=errors, headers=headers, fresh=fresh))
        return handler

    return decorator
