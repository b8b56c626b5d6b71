"""The HTML account portal: Flask-WTF forms over the same service functions as the JSON API."""
from datetime import timedelta

from flask import Blueprint

bp = Blueprint("portal", __name__)


@bp.record_once
def _cookie_lifetime(state) -> None:
    # The signed cookie is permanent and lives as long as the Gatehouse session it names.
    app = state.app
    app.permanent_session_lifetime = timedelta(seconds=app.config["REFRESH_TOKEN_TTL"])


# Routes register on bp.
from portal import (account_pages, activity_pages, auth_pages, email_pages, language, mfa_pages,  # noqa: E402,F401
                    security_pages, signin)
