"""The last-admin rule holds on every path: an admin's change or delete, and an admin deleting their
own account, under concurrency too."""
from __future__ import annotations

import queue

from sqlalchemy import func, select, update

import pytest

from gatehouse.extensions import db
from gatehouse.models import Session, User
from gatehouse.services.last_admin import ACTIVE_ADMIN
from tests.actions import PASSWORD, problem
from tests.concurrency import at_once


def make_admin(app, api) -> dict:
    body = api.register()
    with app.app_context():
        db.session.execute(update(User).where(User.id == body["user"]["id"]).values(role="admin"))
        db.session.commit()
    login = api.login(email=body["user"]["email"])
    return {"id": body["user"]["id"], "token": login["tokens"]["accessToken"]}


def active_admins(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User).where(ACTIVE_ADMIN))


def delete_me(client, token: str):
    return client.delete("/users/me", json={"password": PASSWORD}, headers={"Authorization": f"Bearer {token}"})


def test_the_last_admin_cannot_delete_their_own_account(app, api):
    only = make_admin(app, api)
    body = problem(delete_me(api.client, only["token"]), 422, "validation_failed")
    assert body["errors"][0]["field"] == "role" and "no active admin" in body["errors"][0]["message"]
    with app.app_context():
        assert db.session.get(User, only["id"]).deleted_at is None
        assert db.session.scalar(select(func.count()).select_from(Session)
                                 .where(Session.user_id == only["id"], Session.revoked_at.is_(None))) == 2
    assert api.get("/auth/me", token=only["token"]).status_code == 200


def test_an_admin_with_another_admin_may_leave_and_then_the_other_may_not(app, api):
    first, second = make_admin(app, api), make_admin(app, api)
    assert delete_me(api.client, first["token"]).status_code == 204
    assert active_admins(app) == 1
    problem(delete_me(api.client, second["token"]), 422, "validation_failed")
    assert active_admins(app) == 1
    member = api.register()
    assert delete_me(api.client, member["tokens"]["accessToken"]).status_code == 204  # the rule is for admins


def test_two_last_admins_deleting_themselves_at_once_leave_one(app, api, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    tokens = queue.SimpleQueue()
    for _ in range(2):
        tokens.put(make_admin(app, api)["token"])
    statuses = at_once(app, 2, lambda client: delete_me(client, tokens.get_nowait()).status_code)
    assert sorted(statuses) == [204, 422]
    assert active_admins(app) == 1


def test_an_admin_deleting_themselves_while_demoting_the_other_leaves_one(app, api, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    first, second = make_admin(app, api), make_admin(app, api)
    turns = queue.SimpleQueue()
    turns.put("delete")
    turns.put("demote")

    def act(client):
        if turns.get_nowait() == "delete":
            return delete_me(client, first["token"]).status_code
        return client.patch(f"/admin/users/{second['id']}", json={"role": "user"},
                            headers={"Authorization": f"Bearer {first['token']}"}).status_code

    statuses = at_once(app, 2, act)
    assert active_admins(app) == 1 and sorted(statuses) != [200, 204], statuses
