"""The JSON API: a thin adapter that parses, calls a service and serialises camelCase."""
from flask import Blueprint

bp = Blueprint("api", __name__)

from api import auth_routes, meta  # noqa: E402,F401  (routes register themselves on bp)
from api import recovery_routes  # noqa: E402,F401
