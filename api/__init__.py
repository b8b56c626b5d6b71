"""The JSON API: a thin adapter that parses, calls a service and serialises camelCase."""
from flask import Blueprint

bp = Blueprint("api", __name__)

# Routes register themselves on bp.
from api import (admin_routes, auth_routes, keys_routes, meta, metrics_routes, mfa_routes,  # noqa: E402,F401
                 recovery_routes, security_routes,
                 users_routes, ws_routes)
