"""One validation step for every input: bodies that are not objects, text with NUL or too long once
normalised, numbers, versions and dates out of range. Each is a clear 4xx on both databases and
leaves the database as it was."""
from __future__ import annotations

import json
import re
import socket
from typing import Annotated

import pytest
from pydantic import Field
from sqlalchemy import func, select

from gatehouse.extensions import db
from gatehouse.models import IdempotencyKey, Session, Subscription, User
from gatehouse.params import MAX_VERSION, Params
from tests.actions import PASSWORD, problem
from tests.test_admin import make_admin, set_role  # noqa: F401  (fixture)
from tests.test_portal import CSRF_RE, Portal, alert, mark_verified, text


def version_of(app, user_id: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.version).where(User.id == user_id))


def count_users(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


@pytest.fixture
def member(api) -> dict:
    body = api.register(displayName="Before")
    return {"id": body["user"]["id"], "token": body["tokens"]["accessToken"]}


# ---- a body that is not a JSON object --------------------------------------------------------------

@pytest.mark.parametrize("data", ["null", "0", "42", '"text"', "[]", "[{}]", "true"])
def test_a_patch_body_that_is_not_an_object_is_422_and_changes_nothing(app, api, member, data):
    response = api.client.patch("/users/me", data=data, content_type="application/json",
                                headers={"Authorization": f"Bearer {member['token']}"})
    body = problem(response, 422, "validation_failed")
    assert body["errors"] == [{"field": "body", "message": "must be a JSON object"}]
    assert version_of(app, member["id"]) == 1


@pytest.mark.parametrize("path", ["/auth/logout", "/auth/me"])
def test_null_is_a_body_even_where_every_field_is_optional_or_none_is_taken(api, member, path):
    method = "post" if path == "/auth/logout" else "get"
    response = getattr(api.client, method)(path, data="null", content_type="application/json",
                                           headers={"Authorization": f"Bearer {member['token']}"})
    problem(response, 422, "validation_failed")


def test_no_body_at_all_is_still_an_empty_patch(app, api, member):
    response = api.client.patch("/users/me", headers={"Authorization": f"Bearer {member['token']}"})
    assert response.status_code == 200
    assert version_of(app, member["id"]) == 1


# ---- versions: If-Match and the portal's hidden field ---------------------------------------------

@pytest.mark.parametrize("tag", ['"²"', '"١"', '"1²"', f'"{MAX_VERSION + 1}"', f'"{2**63}"', f'"{10**40}"',
                                 '"0"', '"-1"', '"+1"', '" 1"'])
def test_an_if_match_that_no_version_can_have_is_412_and_changes_nothing(app, api, member, tag):
    response = api.patch("/users/me", json={"displayName": "After"}, token=member["token"],
                         headers={"If-Match": tag})
    problem(response, 412, "precondition_failed")
    assert version_of(app, member["id"]) == 1


def test_the_largest_version_is_compared_not_refused(app, api, member):
    response = api.patch("/users/me", json={"displayName": "After"}, token=member["token"],
                         headers={"If-Match": f'"{MAX_VERSION}"'})
    problem(response, 412, "precondition_failed")  # a valid number that does not match
    response = api.patch("/users/me", json={"displayName": "After"}, token=member["token"],
                         headers={"If-Match": '"1"'})
    assert response.status_code == 200 and response.headers["ETag"] == '"2"'


@pytest.fixture
def signed_in_portal(app, client, api):
    api.register("form@example.com")
    mark_verified(app, "form@example.com")
    portal = Portal(client)
    portal.login("form@example.com")
    return portal


@pytest.mark.parametrize("version", ["²", str(MAX_VERSION + 1), str(2**63), "9" * 40, "-3", "1e3"])
def test_the_portal_refuses_a_version_field_no_page_can_have_shown(app, signed_in_portal, version):
    shown = signed_in_portal.get("/account")
    token = CSRF_RE.search(text(shown)).group(1)
    response = signed_in_portal.client.post("/account", data={
        "csrf_token": token, "version": version, "display_name": "Here",
        "region": "US", "currency": "USD", "locale": "en", "timezone": "UTC"})
    assert response.status_code == 422
    assert "version" in alert(response)
    with app.app_context():
        user = db.session.execute(select(User).where(User.email == "form@example.com")).unique().scalar_one()
        assert (user.display_name, user.version) == (None, 1)


def test_the_portal_accepts_the_version_it_showed(app, signed_in_portal):
    shown = signed_in_portal.get("/account")
    token = CSRF_RE.search(text(shown)).group(1)
    version = re.search(r'name="version" type="hidden" value="(\d+)"', text(shown)).group(1)
    response = signed_in_portal.client.post("/account", data={
        "csrf_token": token, "version": version, "display_name": "Here",
        "region": "US", "currency": "USD", "locale": "en", "timezone": "UTC"})
    assert response.status_code == 302


# ---- dates -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_date_outside_what_can_be_stored_is_422(app, api, make_admin, member, moment):  # noqa: F811
    admin = make_admin()
    response = api.patch(f"/admin/users/{member['id']}", json={"subscription": {"currentPeriodEnd": moment}},
                         token=admin["token"])
    body = problem(response, 422, "validation_failed")
    assert body["errors"][0]["field"] == "subscription.currentPeriodEnd"
    with app.app_context():
        assert db.session.get(Subscription, member["id"]).current_period_end is None


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00-01:00",
                                    "9999-12-31T23:59:59Z", "9999-12-31T23:59:59+01:00"])
def test_the_first_and_last_storable_moments_are_kept(app, api, make_admin, member, moment):  # noqa: F811
    admin = make_admin()
    response = api.patch(f"/admin/users/{member['id']}", json={"subscription": {"currentPeriodEnd": moment}},
                         token=admin["token"])
    assert response.status_code == 200, response.get_json()


# ---- text: NUL and the column's length after normalisation -----------------------------------------

def test_nul_in_the_portal_login_identifier_is_refused_in_words(app, client):
    portal = Portal(client)
    response = portal.login("mallory\x00@example.com")
    assert response.status_code == 422
    assert "NUL" in text(response)


def test_nul_in_an_admin_search_is_422(api, make_admin):  # noqa: F811
    admin = make_admin()
    body = problem(api.get("/admin/users?q=a%00b", token=admin["token"]), 422, "validation_failed")
    assert body["errors"] == [{"field": "q", "message": "must not contain NUL or lone surrogates"}]


# An address is stored in its normal form (NFKC first), and measured in it: "\ufb00" is one
# character that NFKC turns into "ff", so 121 of them and "@example.com" are 254 characters (the most
# an address may have) and 122 are too many, however short the address looked as typed.
@pytest.mark.parametrize("count, status", [(120, 201), (121, 201), (122, 422)])
def test_an_email_is_measured_after_normalisation(app, api, count, status):
    before = count_users(app)
    local = "\ufb00" * count
    response = api.client.post("/auth/register", json={"email": f"{local}@example.com", "password": PASSWORD})
    assert response.status_code == status, response.get_json()
    if status == 422:
        assert problem(response, 422, "validation_failed")["errors"][0]["field"] == "email"
    else:
        assert response.get_json()["user"]["email"] == "ff" * count + "@example.com"
    assert count_users(app) == before + (status == 201)


def test_an_address_whose_normal_form_is_no_address_is_refused(app, api):
    # "\ufdfa" is one character that NFKC turns into 18, spaces among them: no valid local part,
    # and 21 of them would have made a key longer than the column.
    for count in (1, 17, 21):
        response = api.client.post("/auth/register", json={"email": "\ufdfa" * count + "@example.com",
                                                           "password": PASSWORD})
        assert problem(response, 422, "validation_failed")["errors"][0]["field"] == "email"
    assert count_users(app) == 0


def test_a_user_agent_with_nul_is_stored_without_it(app, api):
    response = api.client.post("/auth/register", json={"email": "ua@example.com", "password": PASSWORD},
                               headers={"User-Agent": "curl\x00/8"})
    assert response.status_code == 201
    with app.app_context():
        assert db.session.scalar(select(Session.user_agent)) == "curl/8"


# ---- paths -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length, status", [(2047, 404), (2048, 404), (2049, 414)])
def test_a_path_longer_than_2048_is_414_before_anything_is_stored(app, api, member, length, status):
    path = "/users/me/sessions/" + "a" * (length - len("/users/me/sessions/"))
    response = api.delete(path, token=member["token"], headers={"Idempotency-Key": f"k{length}"})
    problem(response, status, "not_found" if status == 404 else "bad_request")
    with app.app_context():
        stored = db.session.scalar(select(func.count()).select_from(IdempotencyKey))
    assert stored == (1 if status == 404 else 0)


# ---- the step itself: no params class may leave a text or a number unbounded ---------------------

def test_a_params_class_with_an_unbounded_text_or_number_is_refused_at_definition():
    with pytest.raises(TypeError, match="max_length"):
        class Loose(Params):
            name: str

    with pytest.raises(TypeError, match="range"):
        class Counting(Params):
            count: Annotated[int, Field(ge=0)] | None = None

    class Bounded(Params):
        name: Annotated[str, Field(max_length=10)]
        count: Annotated[int, Field(ge=0, le=10)] = 0

    assert Bounded.model_validate({"name": "x"}).count == 0


# ---- gunicorn's own refusals -------------------------------------------------------------------------

def raw(server, request: bytes) -> tuple[int, dict, dict]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.slow
@pytest.mark.parametrize("leg", ["sqlite"], indirect=True)  # gunicorn answers before any database is asked
def test_gunicorn_refusals_are_problem_json(server):
    cases = [
        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414),  # the app's guard
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),  # gunicorn's request line limit
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(101)) + b"\r\n", 431),
        (b"NOT A REQUEST\r\n\r\n", 400),
    ]
    for request, status in cases:
        got, headers, body = raw(server, request)
        assert got == status
        assert headers["Content-Type"] == "application/problem+json"
        assert (body["status"], body["code"]) == (status, "bad_request")
        assert "bbbb" not in json.dumps(body) and "aaaa" not in json.dumps(body)  # nothing of the request echoed


def test_a_forwarded_address_longer_than_its_column_still_keys_idempotency(make_app):
    app = make_app(TRUSTED_PROXIES="1")
    client = app.test_client()
    forwarded = {"X-Forwarded-For": "x" * 300, "Idempotency-Key": "long-address"}
    body = {"email": "nobody@example.com"}
    first = client.post("/auth/forgot-password", json=body, headers=forwarded)
    again = client.post("/auth/forgot-password", json=body, headers=forwarded)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    with app.app_context():
        (caller,) = db.session.scalars(select(IdempotencyKey.caller)).all()
        assert caller.startswith("addr:sha256:") and len(caller) <= 80
