"""POST /auth/register: the account, its rows, its first session, and the rules of every field."""
import re

import pytest
from sqlalchemy import func, select

from gatehouse.extensions import db
from gatehouse.models import Device, RefreshToken, Session, Subscription, User, UserSettings
from gatehouse.security.tokens import sha256_hex
from tests.actions import PASSWORD, problem
from tests.concurrency import at_once

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_register_returns_user_tokens_and_session_as_the_contract_shapes_them(api):
    body = api.register(email="Ada@Example.com", username="ada", displayName="Ada L.",
                        device={"id": "phone-1", "name": "Pixel 9", "platform": "android", "appVersion": "3.1"})
    user, tokens, session = body["user"], body["tokens"], body["session"]
    assert set(user) == {"id", "email", "emailVerified", "username", "displayName", "avatarUrl", "region",
                         "currency", "locale", "timezone", "role", "preferences", "subscription", "showStatus",
                         "lastLoginAt", "createdAt", "updatedAt", "version"}
    assert UUID.match(user["id"]) and user["email"] == "Ada@example.com" and user["emailVerified"] is False
    assert (user["username"], user["displayName"], user["role"], user["showStatus"]) == ("ada", "Ada L.", "user",
                                                                                         "visible")
    assert (user["region"], user["currency"], user["locale"], user["timezone"]) == ("US", "USD", "en", "UTC")
    assert user["preferences"]["focus"] == {"defaultMinutes": 25, "breakMinutes": 5, "dailyGoalMinutes": 120}
    assert user["subscription"] == {"tier": "free", "status": "active", "currentPeriodEnd": None}
    assert user["version"] == 1 and ISO_Z.match(user["createdAt"])
    assert set(tokens) == {"tokenType", "accessToken", "refreshToken", "issuedAt", "expiresAt", "refreshExpiresAt"}
    assert tokens["tokenType"] == "Bearer"
    assert all(ISO_Z.match(tokens[k]) for k in ("issuedAt", "expiresAt", "refreshExpiresAt"))
    assert set(session) == {"id", "current", "createdAt", "lastSeenAt", "expiresAt", "ipAddress", "userAgent",
                            "device"}
    assert session["current"] is True and session["expiresAt"] == tokens["refreshExpiresAt"]
    assert session["device"]["name"] == "Pixel 9" and session["device"]["appVersion"] == "3.1"


def test_register_writes_every_row_in_one_go(app, api):
    body = api.register(email="rows@example.com", device={"id": "d", "name": "Mac", "platform": "macos"})
    with app.app_context():
        user = db.session.get(User, body["user"]["id"])
        assert user.email_key == "rows@example.com" and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        assert db.session.get(UserSettings, user.id).preferences == {}
        assert db.session.get(Subscription, user.id).tier == "free"
        assert db.session.scalar(select(func.count()).select_from(Device).where(Device.user_id == user.id)) == 1
        session = db.session.get(Session, body["session"]["id"])
        assert session.user_id == user.id and session.revoked_at is None
        token = db.session.execute(select(RefreshToken).where(RefreshToken.session_id == session.id)).scalar_one()
        assert token.token_hash == sha256_hex(body["tokens"]["refreshToken"])


@pytest.mark.parametrize("variant", ["taken@example.com", "TAKEN@EXAMPLE.COM", "Taken@Example.Com",
                                     "ｔａｋｅｎ@example.com"])
def test_an_email_is_taken_whatever_its_case_or_width(api, variant):
    api.register(email="taken@example.com")
    problem(api.client.post("/auth/register", json={"email": variant, "password": PASSWORD}), 409, "email_taken")


def test_a_username_is_taken_ignoring_case(api):
    api.register(username="Grace")
    response = api.client.post("/auth/register", json={"email": "g2@example.com", "password": PASSWORD,
                                                       "username": "gRACE"})
    problem(response, 409, "username_taken")


def test_concurrent_registrations_of_one_address_give_one_account(app):
    variants = ["race@example.com", "RACE@example.com", "Race@Example.com", "race@EXAMPLE.com",
                "rAce@example.com", "raCe@example.com", "racE@example.com", "ｒａｃｅ@example.com"]

    def register(client):
        index = register.counter.pop()
        return client.post("/auth/register", json={"email": variants[index], "password": PASSWORD})

    register.counter = list(range(len(variants)))
    responses = at_once(app, len(variants), register)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(variants) - 1), [r.get_json() for r in responses]
    assert all(r.get_json()["code"] == "email_taken" for r in responses if r.status_code == 409)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1
        assert db.session.scalar(select(func.count()).select_from(UserSettings)) == 1


def test_concurrent_registrations_of_one_username_give_one_account(app):
    def register(client):
        email = f"u{id(client)}@example.com"
        return client.post("/auth/register", json={"email": email, "password": PASSWORD, "username": "Same"})

    responses = at_once(app, 6, register)
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize("fields, region, currency", [
    ({}, "US", "USD"),
    ({"region": "DE"}, "DE", "EUR"),
    ({"region": "de"}, "DE", "EUR"),
    ({"region": "PA", "currency": "USD"}, "PA", "USD"),
    ({"region": "PA"}, "PA", "PAB"),
    ({"currency": "usd"}, "US", "USD"),
])
def test_region_and_currency_defaults(api, fields, region, currency):
    user = api.register(**fields)["user"]
    assert (user["region"], user["currency"]) == (region, currency)


@pytest.mark.parametrize("fields, field", [
    ({"region": "DE", "currency": "USD"}, "currency"),
    ({"currency": "EUR"}, "currency"),
    ({"region": "XK"}, "region"),
    ({"region": "EU"}, "region"),
    ({"region": "USA"}, "region"),
    ({"currency": "EURO"}, "currency"),
])
def test_region_and_currency_are_checked(api, fields, field):
    response = api.client.post("/auth/register", json={"email": "r@example.com", "password": PASSWORD, **fields})
    body = problem(response, 422, "validation_failed")
    assert body["errors"][0]["field"] == field


@pytest.mark.parametrize("fields, field", [
    ({"email": "not-an-address"}, "email"),
    ({"email": "a@" + "x" * 300 + ".com"}, "email"),
    ({"username": "ab"}, "username"),
    ({"username": "a" * 33}, "username"),
    ({"username": "_leading"}, "username"),
    ({"username": "has space"}, "username"),
    ({"displayName": ""}, "displayName"),
    ({"displayName": "x" * 101}, "displayName"),
    ({"displayName": "bell\u0007"}, "displayName"),
    ({"locale": "not a locale"}, "locale"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"device": {"name": "x"}}, "device.platform"),
])
def test_field_rules_name_the_field(api, fields, field):
    body = {"email": "f@example.com", "password": PASSWORD, **fields}
    response = problem(api.client.post("/auth/register", json=body), 422, "validation_failed")
    assert field in {e["field"] for e in response["errors"]}


@pytest.mark.parametrize("username", ["abc", "a" * 32, "a.b-c_d", "9lives"])
def test_username_boundaries_accepted(api, username):
    assert api.register(username=username)["user"]["username"] == username


def test_locale_and_timezone_are_canonical(api):
    user = api.register(locale="pt-br", timezone="America/Sao_Paulo")["user"]
    assert (user["locale"], user["timezone"]) == ("pt-BR", "America/Sao_Paulo")


def test_no_tokens_or_rows_when_registration_fails(app, api):
    problem(api.client.post("/auth/register", json={"email": "weak@example.com", "password": "short"}), 422,
            "password_too_weak")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
