"""Property-based run of schemathesis against /openapi.json on SQLite: requests generated from the
document (valid ones and deliberately invalid ones) must never get a 5xx, every response must match
its documented status, media type and schema, and a request the document calls invalid must be
refused. Bounded (a few examples per operation) so that it stays well under two minutes.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from tests.actions import PASSWORD

EXAMPLES = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
# Signing out ends the caller's session: these get an account of their own for every case.
ENDS_THE_SESSION = {("POST", "/auth/logout")}


@pytest.fixture
def leg():
    return "sqlite"  # generated requests run once; the database legs are the other tests' business


@pytest.fixture
def accounts(app):
    """Sign a new admin in (admins reach every operation); a fresh session each call."""
    from gatehouse.extensions import db
    from gatehouse.services.accounts import new_user
    from gatehouse.clock import now

    with app.app_context():
        new_user(email="fuzz-admin@example.com", password=PASSWORD, now=now(), role="admin")
        db.session.commit()
    client = app.test_client()

    def sign_in() -> str:
        response = client.post("/auth/login", json={"email": "fuzz-admin@example.com", "password": PASSWORD})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["tokens"]["accessToken"]

    token = sign_in()
    return lambda case: sign_in() if (case.method.upper(), case.path) in ENDS_THE_SESSION else token


def _document() -> dict:
    """/openapi.json as a client reads it (the document does not depend on the database)."""
    import tempfile

    from gatehouse import create_app
    from gatehouse.extensions import db
    from tests.conftest import BASE_CONFIG

    with tempfile.TemporaryDirectory() as directory:
        app = create_app({**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{directory}/unused.db"})
        document = app.test_client().get("/openapi.json").get_json()
        with app.app_context():
            db.engine.dispose()
    return document


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_document(case, app, accounts):
    # A generated bearer token is replaced by a real one; a case without one (deliberately) stays so.
    sends_token = "Authorization" in (case.headers or {})
    headers = {"Authorization": f"Bearer {accounts(case)}"} if sends_token else None
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)
