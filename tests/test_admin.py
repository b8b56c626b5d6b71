"""/admin/users: admins only (token and account), listing with filters and keyset pages, changes, delete, restore."""
from datetime import datetime, timezone

import pytest
import time_machine
from sqlalchemy import select, update

from gatehouse.extensions import db
from gatehouse.models import RefreshToken, Session, Subscription, User
from tests.actions import bearer, problem
from tests.concurrency import each_at_once

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def set_role(app, user_id: str, role: str) -> None:
    with app.app_context():
        db.session.execute(update(User).where(User.id == user_id).values(role=role))
        db.session.commit()


def stored(app, user_id: str) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge_all()
        return user


def live_sessions(app, user_id: str) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(Session.id).where(Session.user_id == user_id,
                                                                Session.revoked_at.is_(None))))


@pytest.fixture
def make_admin(app, api):
    def make(**fields) -> dict:
        body = api.register(**fields)
        set_role(app, body["user"]["id"], "admin")
        login = api.login(email=body["user"]["email"])
        return {"id": body["user"]["id"], "email": body["user"]["email"], "token": login["tokens"]["accessToken"]}

    return make


@pytest.fixture
def admin(make_admin) -> dict:
    return make_admin(username="root")


@pytest.fixture
def member(api) -> dict:
    body = api.register(username="member", displayName="Mary Member")
    return {"id": body["user"]["id"], "email": body["user"]["email"], "token": body["tokens"]["accessToken"],
            "refresh": body["tokens"]["refreshToken"]}


def calls(user_id: str) -> list[tuple[str, str, dict | None]]:
    return [("GET", "/admin/users", None), ("GET", f"/admin/users/{user_id}", None),
            ("PATCH", f"/admin/users/{user_id}", {"role": "admin"}), ("DELETE", f"/admin/users/{user_id}", None),
            ("POST", f"/admin/users/{user_id}/restore", None)]


def send(api, method: str, path: str, body=None, token=None):
    return api.client.open(path, method=method, json=body,
                           headers={"Authorization": f"Bearer {token}"} if token else {})


# ---- who may ----------------------------------------------------------------------------------

def test_without_a_token_every_admin_call_is_401(api, member):
    for method, path, body in calls(member["id"]):
        problem(send(api, method, path, body), 401, "token_invalid")


def test_a_user_is_forbidden_everywhere_and_nothing_changes(app, api, member):
    for method, path, body in calls(member["id"]):
        problem(send(api, method, path, body, member["token"]), 403, "forbidden")
    user = stored(app, member["id"])
    assert (user.role, user.deleted_at, user.version) == ("user", None, 1)


def test_an_admin_claim_is_refused_once_the_account_is_demoted(app, api, admin):
    assert api.get("/admin/users", token=admin["token"]).status_code == 200
    set_role(app, admin["id"], "user")
    problem(api.get("/admin/users", token=admin["token"]), 403, "forbidden")


def test_a_promoted_account_needs_a_token_that_says_so(app, api, member):
    set_role(app, member["id"], "admin")
    problem(api.get("/admin/users", token=member["token"]), 403, "forbidden")
    fresh = api.login(email=member["email"])["tokens"]["accessToken"]
    assert api.get("/admin/users", token=fresh).status_code == 200


# ---- listing ----------------------------------------------------------------------------------

def page_ids(api, token: str, query: str = "", limit: int = 10) -> list[str]:
    seen, cursor = [], None
    while True:
        url = f"/admin/users?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(url, token=token)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert len(body["users"]) <= limit
        seen += [user["id"] for user in body["users"]]
        cursor = body["nextCursor"]
        if cursor is None:
            return seen


def test_pages_of_10_give_every_one_of_26_users_exactly_once_newest_first(app, api, admin):
    ids = [admin["id"]]
    with time_machine.travel(datetime(2026, 6, 1, tzinfo=timezone.utc), tick=False):
        ids += [api.register()["user"]["id"] for _ in range(15)]  # one instant: ties broken by id
    ids += [api.register()["user"]["id"] for _ in range(10)]
    first = api.get("/admin/users?limit=10", token=admin["token"]).get_json()
    assert len(first["users"]) == 10 and first["nextCursor"]
    seen = page_ids(api, admin["token"])
    assert sorted(seen) == sorted(ids) and len(seen) == 26
    with app.app_context():
        order = db.session.execute(select(User.created_at, User.id)).all()
    assert seen == [user_id for _, user_id in sorted(order, reverse=True)]


def test_users_added_between_pages_neither_repeat_nor_push_others_out(api, admin):
    ids = {admin["id"]} | {api.register()["user"]["id"] for _ in range(12)}
    first = api.get("/admin/users?limit=5", token=admin["token"]).get_json()
    newcomer = api.register()["user"]["id"]
    seen = [user["id"] for user in first["users"]]
    cursor = first["nextCursor"]
    while cursor:
        body = api.get(f"/admin/users?limit=5&cursor={cursor}", token=admin["token"]).get_json()
        seen += [user["id"] for user in body["users"]]
        cursor = body["nextCursor"]
    assert len(seen) == len(set(seen)) and set(seen) == ids and newcomer not in seen


def test_a_tampered_or_foreign_cursor_is_refused(api, admin):
    api.register()
    cursor = api.get("/admin/users?limit=1", token=admin["token"]).get_json()["nextCursor"]
    payload, signature = cursor.split(".")
    for bad in (f"{payload}.{signature[::-1]}", f"{payload[:-2]}AA.{signature}", "garbage", "."):
        body = problem(api.get(f"/admin/users?cursor={bad}", token=admin["token"]), 422, "validation_failed")
        assert body["errors"][0]["field"] == "cursor"


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("showStatus=all", "showStatus"),
    ("includeDeleted=maybe", "includeDeleted"), ("page=2", "page"), ("limit=5&limit=6", "limit"),
    ("show_status=hidden", "show_status"),
])
def test_bad_query_parameters_are_422_naming_them(api, admin, query, field):
    body = problem(api.get(f"/admin/users?{query}", token=admin["token"]), 422, "validation_failed")
    assert field in {error["field"] for error in body["errors"]}


def test_hidden_and_deleted_users_are_left_out_unless_asked_for(app, api, admin):
    visible = api.register()["user"]["id"]
    hidden = api.register()["user"]["id"]
    deleted = api.register()["user"]["id"]
    hidden_deleted = api.register()["user"]["id"]
    with app.app_context():
        db.session.execute(update(User).where(User.id.in_([hidden, hidden_deleted])).values(show_status="hidden"))
        db.session.execute(update(User).where(User.id.in_([deleted, hidden_deleted]))
                           .values(deleted_at=datetime.now(timezone.utc)))
        db.session.commit()
    token = admin["token"]
    assert set(page_ids(api, token)) == {admin["id"], visible}
    assert set(page_ids(api, token, "&showStatus=visible")) == {admin["id"], visible}
    assert set(page_ids(api, token, "&showStatus=hidden")) == {hidden}
    assert set(page_ids(api, token, "&includeDeleted=true")) == {admin["id"], visible, deleted}
    assert set(page_ids(api, token, "&includeDeleted=true&showStatus=hidden")) == {hidden, hidden_deleted}
    assert set(page_ids(api, token, "&includeDeleted=false&q=")) == {admin["id"], visible}


def test_q_matches_email_username_and_display_name_ignoring_case(api, admin):
    by_email = api.register(email="Findme.Person@Example.com")["user"]["id"]
    by_username = api.register(username="Zed_Findme")["user"]["id"]
    by_name = api.register(displayName="Captain FINDME")["user"]["id"]
    api.register(email="other@example.com", username="someone", displayName="Nobody")
    api.register(displayName="100% sure")
    assert set(page_ids(api, admin["token"], "&q=fIndMe")) == {by_email, by_username, by_name}
    assert page_ids(api, admin["token"], "&q=zed_") == [by_username]
    assert len(page_ids(api, admin["token"], "&q=%25")) == 1  # a literal %, not a wildcard
    assert page_ids(api, admin["token"], "&q=_findme") == [by_username]  # a literal _


def test_the_list_shows_the_account_state(api, admin, member):
    users = api.get("/admin/users", token=admin["token"]).get_json()["users"]
    entry = next(user for user in users if user["id"] == member["id"])
    assert entry["disabled"] is False and entry["deletedAt"] is None
    assert entry["email"] == member["email"] and entry["displayName"] == "Mary Member"
    assert entry["subscription"] == {"tier": "free", "status": "active", "currentPeriodEnd": None}


# ---- one user -----------------------------------------------------------------------------------

def test_get_one_user_including_a_deleted_one(app, api, admin, member):
    assert api.get(f"/admin/users/{member['id']}", token=admin["token"]).get_json()["user"]["id"] == member["id"]
    api.delete(f"/admin/users/{member['id']}", token=admin["token"])
    body = api.get(f"/admin/users/{member['id']}", token=admin["token"]).get_json()
    assert body["user"]["deletedAt"].endswith("Z")
    for unknown in (UNKNOWN_ID, "not-a-uuid", "x" * 300):
        problem(api.get(f"/admin/users/{unknown}", token=admin["token"]), 404, "not_found")
        problem(api.patch(f"/admin/users/{unknown}", {"role": "user"}, token=admin["token"]), 404, "not_found")
        problem(api.delete(f"/admin/users/{unknown}", token=admin["token"]), 404, "not_found")
        problem(api.post(f"/admin/users/{unknown}/restore", token=admin["token"]), 404, "not_found")


# ---- changes ------------------------------------------------------------------------------------

def test_patch_changes_the_fields_bumps_the_version_once_and_broadcasts(app, api, admin, member, events):
    response = api.patch(f"/admin/users/{member['id']}", {
        "showStatus": "hidden", "role": "admin",
        "subscription": {"tier": "pro", "status": "trialing", "currentPeriodEnd": "2026-12-31T12:00:00+02:00"},
    }, token=admin["token"])
    assert response.status_code == 200, response.get_json()
    user = response.get_json()["user"]
    assert (user["showStatus"], user["role"], user["version"]) == ("hidden", "admin", 2)
    assert user["subscription"] == {"tier": "pro", "status": "trialing", "currentPeriodEnd": "2026-12-31T10:00:00.000Z"}
    stored_user = stored(app, member["id"])
    assert (stored_user.show_status, stored_user.role, stored_user.version) == ("hidden", "admin", 2)
    with app.app_context():
        sub = db.session.get(Subscription, member["id"])
        assert (sub.tier, sub.status) == ("pro", "trialing")
        assert sub.current_period_end == datetime(2026, 12, 31, 10, tzinfo=timezone.utc)
    updates = [data for user_id, event, data in events if event == "entity:updated"]
    assert updates == [{"entity": "user", "id": member["id"], "version": 2,
                        "fields": ["showStatus", "role", "subscription"]}]


def test_a_partial_subscription_patch_keeps_the_rest_and_null_clears_the_period_end(app, api, admin, member):
    path = f"/admin/users/{member['id']}"
    token = admin["token"]
    api.patch(path, {"subscription": {"tier": "plus", "currentPeriodEnd": "2027-01-01T00:00:00Z"}}, token=token)
    user = api.patch(path, {"subscription": {"status": "past_due"}}, token=token).get_json()["user"]
    assert user["subscription"] == {"tier": "plus", "status": "past_due",
                                    "currentPeriodEnd": "2027-01-01T00:00:00.000Z"}
    user = api.patch(path, {"subscription": {"currentPeriodEnd": None}}, token=token).get_json()["user"]
    assert user["subscription"]["currentPeriodEnd"] is None and user["version"] == 4
    with app.app_context():
        assert db.session.get(Subscription, member["id"]).current_period_end is None


def test_a_patch_that_changes_nothing_writes_nothing(app, api, admin, member, events):
    user = api.patch(f"/admin/users/{member['id']}", {"showStatus": "visible", "subscription": {"tier": "free"}},
                     token=admin["token"]).get_json()["user"]
    assert user["version"] == 1 and stored(app, member["id"]).version == 1
    assert not [e for e in events if e[1] == "entity:updated"]


@pytest.mark.parametrize("body, field, message", [
    ({"email": "new@example.com"}, "email", "is read-only"),
    ({"version": 9}, "version", "is read-only"),
    ({"displayName": "X"}, "displayName", "is read-only"),
    ({"nickname": "x"}, "nickname", "is not a known field"),
    ({"role": "owner"}, "role", None),
    ({"role": None}, "role", "must not be null"),
    ({"disabled": "true"}, "disabled", None),
    ({"showStatus": "invisible"}, "showStatus", None),
    ({"subscription": {"tier": "gold"}}, "subscription.tier", None),
    ({"subscription": {"plan": "pro"}}, "subscription.plan", "is not a known field"),
    ({"subscription": {"currentPeriodEnd": "2027-01-01T00:00:00"}}, "subscription.currentPeriodEnd", None),
    ({"subscription": None}, "subscription", "must not be null"),
])
def test_bad_patches_are_422_naming_the_field_and_change_nothing(app, api, admin, member, body, field, message):
    error = problem(api.patch(f"/admin/users/{member['id']}", body, token=admin["token"]), 422, "validation_failed")
    named = {e["field"]: e["message"] for e in error["errors"]}
    assert field in named and (message is None or named[field] == message)
    assert stored(app, member["id"]).version == 1


def test_disabling_revokes_every_session_at_once(app, api, admin, member):
    other = api.login(email=member["email"])["tokens"]["accessToken"]
    user = api.patch(f"/admin/users/{member['id']}", {"disabled": True}, token=admin["token"]).get_json()["user"]
    assert user["disabled"] is True
    assert stored(app, member["id"]).disabled is True and live_sessions(app, member["id"]) == []
    with app.app_context():
        assert all(t.revoked_at for t in db.session.scalars(select(RefreshToken).join(Session)
                                                            .where(Session.user_id == member["id"])))
    for token in (member["token"], other):
        problem(api.get("/users/me", token=token), 401, "token_revoked")
    problem(api.post("/auth/refresh", {"refreshToken": member["refresh"]}), 401, "token_revoked")
    problem(api.client.post("/auth/login", json={"email": member["email"], "password": "correct horse battery staple"}),
            401, "invalid_credentials")
    api.patch(f"/admin/users/{member['id']}", {"disabled": False}, token=admin["token"])
    assert api.login(email=member["email"])["user"]["id"] == member["id"]


def test_the_last_active_admin_cannot_demote_disable_or_delete_themselves(app, api, admin, make_admin, member):
    path = f"/admin/users/{admin['id']}"
    for body, field in (({"role": "user"}, "role"), ({"disabled": True}, "disabled")):
        error = problem(api.patch(path, body, token=admin["token"]), 422, "validation_failed")
        assert error["errors"][0]["field"] == field and "admin" in error["errors"][0]["message"]
    problem(api.delete(path, token=admin["token"]), 422, "validation_failed")
    user = stored(app, admin["id"])
    assert (user.role, user.disabled, user.deleted_at, user.version) == ("admin", False, None, 1)
    assert len(live_sessions(app, admin["id"])) == 2

    # A disabled admin does not count; a second active one does.
    set_role(app, member["id"], "admin")
    api.patch(f"/admin/users/{member['id']}", {"disabled": True}, token=admin["token"])
    problem(api.patch(path, {"role": "user"}, token=admin["token"]), 422, "validation_failed")
    second = make_admin()
    assert api.patch(path, {"role": "user"}, token=admin["token"]).get_json()["user"]["role"] == "user"
    problem(api.get("/admin/users", token=admin["token"]), 403, "forbidden")
    problem(api.patch(f"/admin/users/{second['id']}", {"role": "user"}, token=second["token"]), 422,
            "validation_failed")


def test_delete_is_a_soft_delete_and_restore_undoes_it(app, api, admin, member):
    response = api.delete(f"/admin/users/{member['id']}", token=admin["token"])
    assert response.status_code == 204 and response.get_data() == b""
    user = stored(app, member["id"])
    assert user.deleted_at is not None and user.version == 2
    assert live_sessions(app, member["id"]) == []
    problem(api.get("/users/me", token=member["token"]), 401, "token_revoked")
    problem(api.client.post("/auth/login", json={"email": member["email"], "password": "correct horse battery staple"}),
            401, "invalid_credentials")
    assert api.delete(f"/admin/users/{member['id']}", token=admin["token"]).status_code == 204
    assert stored(app, member["id"]).version == 2  # a second delete changes nothing

    response = api.post(f"/admin/users/{member['id']}/restore", token=admin["token"])
    assert response.status_code == 200
    assert response.get_json()["user"]["deletedAt"] is None and response.get_json()["user"]["version"] == 3
    user = stored(app, member["id"])
    assert user.deleted_at is None and user.version == 3
    assert api.login(email=member["email"])["user"]["id"] == member["id"]
    again = api.post(f"/admin/users/{member['id']}/restore", token=admin["token"]).get_json()["user"]
    assert again["version"] == 3


def test_admin_writes_honour_idempotency_keys(app, api, admin, member):
    headers = {"Idempotency-Key": "hide-1"}
    first = api.patch(f"/admin/users/{member['id']}", {"showStatus": "hidden"}, token=admin["token"], headers=headers)
    again = api.patch(f"/admin/users/{member['id']}", {"showStatus": "hidden"}, token=admin["token"], headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == first.get_json()
    assert stored(app, member["id"]).version == 2


def test_the_admin_list_documents_its_query_parameters(client):
    operation = client.get("/openapi.json").get_json()["paths"]["/admin/users"]["get"]
    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(query) == {"q", "showStatus", "includeDeleted", "cursor", "limit"}
    assert query["limit"]["schema"]["maximum"] == 100 and not query["limit"]["required"]
    assert "403" in operation["responses"]


def test_two_admins_demoting_each_other_at_once_leave_one_admin(app, api, admin, make_admin):
    second = make_admin()

    def demote(client, pair):
        token, target = pair
        return client.patch(f"/admin/users/{target}", json={"role": "user"}, headers=bearer(token)).status_code

    statuses = each_at_once(app, [(admin["token"], second["id"]), (second["token"], admin["id"])], demote)
    assert sorted(statuses)[0] == 200 and sorted(statuses)[1] in (403, 422), statuses
    with app.app_context():
        admins = db.session.scalars(select(User.id).where(User.role == "admin")).all()
    assert len(admins) == 1
