"""One rule for text on every surface: NUL refused in passwords (API and portal alike), and display
names without control, invisible or text-direction characters."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gatehouse.extensions import db
from gatehouse.models import User
from tests.actions import PASSWORD, problem
from tests.test_portal import Portal, field_error, user_row

NUL_PASSWORD = "correct horse\x00battery staple"
# right-to-left override, its isolate, a zero-width space and joiner, a word joiner, a BOM, a line separator
SPOOFING = ["\u202eevil", "Ad\u200bmin", "Ad\u200dmin", "Ad\u2060min", "\ufeffAdmin", "Ad\u2066min\u2069", "A\u2028B",
            "Soft\u00adhyphen"]


def accounts(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_a_nul_in_a_password_is_refused_by_the_api_and_the_portal_alike(app, api):
    body = problem(api.post("/auth/register", {"email": "nul@example.com", "password": NUL_PASSWORD}), 422,
                   "validation_failed")
    assert body["errors"] == [{"field": "password", "message": "must not contain NUL or lone surrogates"}]

    portal = Portal(app.test_client())
    response = portal.register("nul@example.com", password=NUL_PASSWORD)
    assert response.status_code == 422
    assert field_error(response, "password") == "Password must not contain NUL or lone surrogates."
    assert accounts(app) == 0

    api.register(email="nul@example.com")
    response = portal.login("nul@example.com", password=NUL_PASSWORD)
    assert response.status_code == 422
    assert "must not contain NUL" in field_error(response, "password")


@pytest.mark.parametrize("name", SPOOFING)
def test_display_names_with_invisible_or_direction_characters_are_refused_everywhere(app, api, name):
    me = api.register(displayName="Plain")
    token = me["tokens"]["accessToken"]
    body = problem(api.patch("/users/me", {"displayName": name}, token), 422, "validation_failed")
    assert body["errors"][0]["field"] == "displayName"
    problem(api.post("/auth/register", {"email": "spoof@example.com", "password": PASSWORD, "displayName": name}),
            422, "validation_failed")

    with app.app_context():
        db.session.execute(db.update(User).values(email_verified_at=db.func.now()))
        db.session.commit()
    portal = Portal(app.test_client())
    portal.login(me["user"]["email"])
    response = portal.submit("/account", username="", display_name=name, avatar_url="", region="US",
                             currency="USD", locale="en", timezone="UTC")
    assert response.status_code == 422
    assert "must not contain control, invisible or text-direction characters" in field_error(response, "display_name")
    assert user_row(app, me["user"]["email"]).display_name == "Plain"


def test_ordinary_names_in_any_script_are_kept(api):
    token = api.register()["tokens"]["accessToken"]
    for name in ("Zoë O'Brien", "山田 太郎", "محمد", "Łukasz 🎉"):
        response = api.patch("/users/me", {"displayName": name}, token)
        assert response.status_code == 200 and response.get_json()["user"]["displayName"] == name
