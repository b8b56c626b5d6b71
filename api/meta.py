"""Health, readiness, the supported regions and the OpenAPI document."""
from __future__ import annotations

from flask import current_app, jsonify

from api import bp
from api.routing import endpoint, reply
from api.schemas import HealthOut, RegionOut, RegionsResult
from gatehouse.database import database_ready
from gatehouse.errors import ServiceUnavailable
from gatehouse.regions import REGIONS

_REGIONS = RegionsResult(regions=[RegionOut(code=r.code, name=r.name, default_currency=r.default_currency,
                                            currencies=list(r.currencies)) for r in REGIONS.values()])


@endpoint(bp, "/healthz", "GET", responses={200: HealthOut}, summary="Liveness: 200 while the process lives")
def healthz():
    return reply(HealthOut(status="ok"))


@endpoint(bp, "/readyz", "GET", responses={200: HealthOut}, errors=(503,),
          summary="Readiness: the database (and Redis, when configured) answer")
def readyz():
    checks = {"database": database_ready()}
    redis_check = current_app.extensions.get("gatehouse.redis_ready")
    if redis_check is not None:
        checks["redis"] = redis_check()
    failing = [name for name, ok in checks.items() if not ok]
    if failing:
        raise ServiceUnavailable(f"Not ready: {', '.join(failing)} did not answer.", retry_after=5)
    return reply(HealthOut(status="ok", checks=checks))


@endpoint(bp, "/meta/regions", "GET", responses={200: RegionsResult},
          summary="Supported regions and the currencies each accepts")
def regions():
    return reply(_REGIONS, headers={"Cache-Control": "public, max-age=3600"})


@bp.get("/openapi.json")
def openapi():
    from api.openapi import document

    response = jsonify(document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
