"""GET and PATCH /users/me: field rules, read-only fields, versions, ETag / If-Match, events."""
from __future__ import annotations


import pytest
from flask_jwt_extended import decode_token

from gatehouse.extensions import db
from gatehouse.models import User
from tests.actions import Api, bearer, problem
from tests.concurrency import each_at_once


@pytest.fixture
def me(api):
    body = api.register(username="alice", displayName="Alice")
    return {"id": body["user"]["id"], "token": body["tokens"]["accessToken"],
            "refresh": body["tokens"]["refreshToken"]}


def stored(app, user_id: str) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge_all()
        return user


def updates(events, user_id):
    return [data for who, event, data in events if event == "entity:updated" and who == user_id]


# ---- GET ---------------------------------------------------------------------------------------

def test_get_me_returns_the_user_with_a_strong_etag(api, me):
    response = api.get("/users/me", me["token"])
    assert response.status_code == 200
    user = response.get_json()["user"]
    assert user["id"] == me["id"] and user["username"] == "alice" and user["version"] == 1
    assert response.headers["ETag"] == '"1"'
    assert user["preferences"]["focus"]["defaultMinutes"] == 25


def test_get_me_needs_a_token(api):
    problem(api.get("/users/me"), 401, "token_invalid")


# ---- each writable field -----------------------------------------------------------------------

CHANGES = [
    ({"username": "alice_2"}, {"username": "alice_2"}, ["username"]),
    ({"displayName": "Alice Liddell"}, {"display_name": "Alice Liddell"}, ["displayName"]),
    ({"avatarUrl": "https://cdn.example.com/a.png"}, {"avatar_url": "https://cdn.example.com/a.png"},
     ["avatarUrl"]),
    ({"region": "FR"}, {"region": "FR", "currency": "EUR"}, ["region", "currency"]),
    ({"locale": "pt-BR"}, {"locale": "pt-BR"}, ["locale"]),
    ({"timezone": "Europe/Paris"}, {"timezone": "Europe/Paris"}, ["timezone"]),
]


@pytest.mark.parametrize(("body", "columns", "fields"), CHANGES, ids=[c[2][0] for c in CHANGES])
def test_each_field_changes_bumps_the_version_once_and_publishes(app, api, me, events, body, columns, fields):
    response = api.patch("/users/me", body, me["token"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["user"]["version"] == 2
    assert response.headers["ETag"] == '"2"'
    user = stored(app, me["id"])
    assert user.version == 2
    for column, value in columns.items():
        assert getattr(user, column) == value
    assert updates(events, me["id"]) == [{"entity": "user", "id": me["id"], "version": 2, "fields": fields}]


def test_several_fields_in_one_patch_are_one_version(app, api, me, events):
    response = api.patch("/users/me", {"displayName": "A", "timezone": "Asia/Tokyo", "locale": "ja"}, me["token"])
    assert response.status_code == 200
    assert stored(app, me["id"]).version == 2
    assert updates(events, me["id"])[0]["fields"] == ["displayName", "locale", "timezone"]


def test_a_patch_that_changes_nothing_writes_nothing(app, api, me, events):
    for body in ({}, {"displayName": "Alice", "username": "alice"}):
        response = api.patch("/users/me", body, me["token"])
        assert response.status_code == 200
        assert response.get_json()["user"]["version"] == 1
    assert stored(app, me["id"]).version == 1
    assert updates(events, me["id"]) == []


def test_optional_fields_are_cleared_with_null(app, api, me):
    api.patch("/users/me", {"avatarUrl": "https://x.example/a.png"}, me["token"])
    response = api.patch("/users/me", {"username": None, "displayName": None, "avatarUrl": None}, me["token"])
    assert response.status_code == 200
    user = stored(app, me["id"])
    assert (user.username, user.username_key, user.display_name, user.avatar_url) == (None, None, None, None)


@pytest.mark.parametrize("field", ["region", "currency", "locale", "timezone"])
def test_fields_that_always_have_a_value_refuse_null(app, api, me, field):
    body = problem(api.patch("/users/me", {field: None}, me["token"]), 422, "validation_failed")
    assert body["errors"] == [{"field": field, "message": "must not be null"}]


# ---- refused fields ----------------------------------------------------------------------------

READ_ONLY = {
    "email": "new@example.com", "role": "admin", "emailVerified": True, "version": 7, "showStatus": "hidden",
    "subscription": {"tier": "pro"}, "id": "00000000-0000-0000-0000-000000000000",
    "createdAt": "2020-01-01T00:00:00Z", "updatedAt": "2020-01-01T00:00:00Z", "lastLoginAt": None,
}


@pytest.mark.parametrize("field", READ_ONLY)
def test_read_only_fields_are_refused_by_name_and_nothing_is_written(app, api, me, events, field):
    response = api.patch("/users/me", {"displayName": "Changed", field: READ_ONLY[field]}, me["token"])
    body = problem(response, 422, "validation_failed")
    assert body["errors"] == [{"field": field, "message": "is read-only"}]
    user = stored(app, me["id"])
    assert (user.display_name, user.version, user.role, user.email_verified_at) == ("Alice", 1, "user", None)
    assert updates(events, me["id"]) == []


@pytest.mark.parametrize("field", ["disabled", "deletedAt", "passwordHash", "display_name"])
def test_unknown_fields_are_refused_by_name(app, api, me, field):
    body = problem(api.patch("/users/me", {"displayName": "Changed", field: "x"}, me["token"]), 422,
                   "validation_failed")
    assert body["errors"] == [{"field": field, "message": "is not a known field"}]
    assert stored(app, me["id"]).display_name == "Alice"


INVALID = [
    ("username", "ab"), ("username", "_alice"), ("username", "a" * 33), ("username", "al ice"), ("username", 5),
    ("displayName", ""), ("displayName", "x" * 101), ("displayName", "bad\u0007name"), ("displayName", "tab\there"),
    ("avatarUrl", "http://example.com/a.png"), ("avatarUrl", "https://example.com/" + "a" * 2030),
    ("avatarUrl", "javascript:alert(1)"), ("avatarUrl", "https:///nohost"),
    ("locale", "not a locale"), ("locale", "xx-YY"), ("timezone", "Mars/Olympus"), ("timezone", "utc+2"),
    ("region", "ZZ"), ("region", "USA"), ("currency", "EURO"),
]


@pytest.mark.parametrize(("field", "value"), INVALID, ids=[f"{f}={str(v)[:12]}" for f, v in INVALID])
def test_invalid_values_are_refused_by_field(app, api, me, field, value):
    body = problem(api.patch("/users/me", {field: value}, me["token"]), 422, "validation_failed")
    assert [error["field"] for error in body["errors"]] == [field]
    assert stored(app, me["id"]).version == 1


def test_avatar_url_of_2048_characters_is_accepted(api, me):
    url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    assert api.patch("/users/me", {"avatarUrl": url}, me["token"]).status_code == 200


def test_locale_is_stored_in_its_canonical_form(app, api, me):
    assert api.patch("/users/me", {"locale": "pt-br"}, me["token"]).get_json()["user"]["locale"] == "pt-BR"


# ---- username uniqueness -----------------------------------------------------------------------

def test_a_taken_username_is_409_ignoring_case(app, api, me, events):
    api.register(username="bob")
    problem(api.patch("/users/me", {"username": "BOB"}, me["token"]), 409, "username_taken")
    user = stored(app, me["id"])
    assert (user.username, user.version) == ("alice", 1)
    assert updates(events, me["id"]) == []


def test_a_username_is_shown_as_given_and_keyed_case_folded(app, api, me):
    response = api.patch("/users/me", {"username": "Alice.W"}, me["token"])
    assert response.get_json()["user"]["username"] == "Alice.W"
    user = stored(app, me["id"])
    assert user.username_key == "alice.w"
    api.login(username="ALICE.w")


def test_concurrent_claims_of_one_username_leave_one_owner(app, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    tokens = [Api(app.test_client()).register()["tokens"]["accessToken"] for _ in range(6)]
    statuses = each_at_once(app, tokens, lambda client, token: client.patch(
        "/users/me", json={"username": "wanted"}, headers=bearer(token)).status_code)
    assert sorted(statuses) == [200] + [409] * 5
    with app.app_context():
        assert db.session.query(User).filter(User.username_key == "wanted").count() == 1


# ---- region and currency -----------------------------------------------------------------------

def test_a_new_region_with_an_allowed_currency(app, api, me):
    response = api.patch("/users/me", {"region": "pa", "currency": "usd"}, me["token"])
    assert response.status_code == 200
    user = stored(app, me["id"])
    assert (user.region, user.currency) == ("PA", "USD")


def test_a_currency_alone_must_be_allowed_in_the_current_region(app, api, me, events):
    body = problem(api.patch("/users/me", {"currency": "EUR"}, me["token"]), 422, "validation_failed")
    assert body["errors"][0]["field"] == "currency"
    api.patch("/users/me", {"region": "PA"}, me["token"])
    assert (stored(app, me["id"]).currency) == "PAB"
    assert api.patch("/users/me", {"currency": "USD"}, me["token"]).status_code == 200
    assert stored(app, me["id"]).currency == "USD"
    assert updates(events, me["id"])[-1] == {"entity": "user", "id": me["id"], "version": 3, "fields": ["currency"]}


def test_a_currency_not_allowed_in_the_new_region_is_refused(app, api, me):
    body = problem(api.patch("/users/me", {"region": "FR", "currency": "USD"}, me["token"]), 422,
                   "validation_failed")
    assert body["errors"][0]["field"] == "currency"
    user = stored(app, me["id"])
    assert (user.region, user.currency, user.version) == ("US", "USD", 1)


def test_the_same_region_again_keeps_the_chosen_currency(app, api, me):
    api.patch("/users/me", {"region": "PA", "currency": "USD"}, me["token"])
    response = api.patch("/users/me", {"region": "PA"}, me["token"])
    assert response.get_json()["user"]["currency"] == "USD"
    assert stored(app, me["id"]).version == 2


def test_access_token_claims_follow_the_region_from_the_next_refresh(app, api, me):
    api.patch("/users/me", {"region": "FR"}, me["token"])
    response = api.post("/auth/refresh", {"refreshToken": me["refresh"]})
    assert response.status_code == 200
    with app.app_context():
        claims = decode_token(response.get_json()["tokens"]["accessToken"])
    assert (claims["region"], claims["currency"]) == ("FR", "EUR")


# ---- ETag / If-Match ---------------------------------------------------------------------------

def test_if_match_with_the_current_etag_applies(api, me):
    etag = api.get("/users/me", me["token"]).headers["ETag"]
    response = api.patch("/users/me", {"displayName": "B"}, me["token"], headers={"If-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'


def test_if_match_with_a_stale_etag_is_412_and_writes_nothing(app, api, me, events):
    stale = api.get("/users/me", me["token"]).headers["ETag"]
    api.patch("/users/me", {"displayName": "B"}, me["token"])
    response = api.patch("/users/me", {"displayName": "C"}, me["token"], headers={"If-Match": stale})
    problem(response, 412, "precondition_failed")
    user = stored(app, me["id"])
    assert (user.display_name, user.version) == ("B", 2)
    assert len(updates(events, me["id"])) == 1


@pytest.mark.parametrize("header", ['W/"1"', '"1x"', "", '"1", "2"'])
def test_if_match_that_is_not_one_strong_etag_is_412(app, api, me, header):
    response = api.patch("/users/me", {"displayName": "B"}, me["token"], headers={"If-Match": header})
    problem(response, 412, "precondition_failed")
    assert stored(app, me["id"]).version == 1


def test_if_match_star_applies(api, me):
    response = api.patch("/users/me", {"displayName": "B"}, me["token"], headers={"If-Match": "*"})
    assert response.status_code == 200


def test_a_refused_field_with_a_stale_etag_reports_the_field(api, me):
    response = api.patch("/users/me", {"email": "x@example.com"}, me["token"], headers={"If-Match": '"9"'})
    problem(response, 422, "validation_failed")


# ---- concurrency (PostgreSQL) ------------------------------------------------------------------

def _race(app, token, bodies, headers=None):
    def patch(client, body):
        response = client.patch("/users/me", json=body, headers={**bearer(token), **(headers or {})})
        return response.status_code, response.get_json()

    return each_at_once(app, bodies, patch)


def test_concurrent_patches_each_get_their_own_version(app, me, events, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    results = _race(app, me["token"], [{"displayName": f"Name {i}"} for i in range(8)])
    assert [status for status, _ in results] == [200] * 8
    assert sorted(body["user"]["version"] for _, body in results) == list(range(2, 10))
    assert stored(app, me["id"]).version == 9
    assert sorted(data["version"] for data in updates(events, me["id"])) == list(range(2, 10))


def test_concurrent_patches_of_different_fields_lose_none(app, me, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    bodies = [{"displayName": "D"}, {"locale": "fr"}, {"timezone": "Europe/Oslo"}, {"avatarUrl": "https://a.example/x"},
              {"preferences": {"focus": {"defaultMinutes": 50}}}, {"preferences": {"ai": {"enabled": False}}}]
    results = _race(app, me["token"], bodies)
    assert [status for status, _ in results] == [200] * len(bodies)
    user = stored(app, me["id"])
    assert (user.display_name, user.locale, user.timezone, user.avatar_url) == (
        "D", "fr", "Europe/Oslo", "https://a.example/x")
    assert user.version == 1 + len(bodies)
    with app.app_context():
        prefs = db.session.get(User, me["id"]).settings.preferences
    assert prefs == {"focus": {"defaultMinutes": 50}, "ai": {"enabled": False}}


def test_concurrent_patches_with_the_same_if_match_let_one_win(app, me, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    results = _race(app, me["token"], [{"displayName": f"Name {i}"} for i in range(8)], headers={"If-Match": '"1"'})
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [412] * 7
    winner = next(body for status, body in results if status == 200)
    user = stored(app, me["id"])
    assert (user.version, user.display_name) == (2, winner["user"]["displayName"])
