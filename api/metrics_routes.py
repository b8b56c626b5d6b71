"""GET /metrics: the Prometheus scrape, for loopback callers and holders of METRICS_TOKEN only."""
from __future__ import annotations

import ipaddress

from flask import Response, current_app, request

from api import bp
from gatehouse import metrics
from gatehouse.clock import now
from gatehouse.errors import NotFound
from gatehouse.security.tokens import same


def _allowed() -> bool:
    """Loopback (ProxyFix has already replaced a trusted proxy's address with the client's), or the
    Bearer METRICS_TOKEN, compared in constant time."""
    try:
        if ipaddress.ip_address(request.remote_addr or "").is_loopback:
            return True
    except ValueError:
        pass
    expected = current_app.config["METRICS_TOKEN"]
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and same(sent.strip(), expected)


@bp.get("/metrics")
def scrape():
    if not _allowed():
        raise NotFound()  # the endpoint does not exist for anyone else
    return Response(metrics.exposition(now()), mimetype=None, content_type=metrics.CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
