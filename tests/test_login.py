"""POST /auth/login: sessions, devices, and one answer for every kind of refusal."""
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import func, select, update

from gatehouse.extensions import db
from gatehouse.models import Device, Session, User
from tests.actions import PASSWORD, problem

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_login_by_email_in_any_case_or_by_username(api):
    api.register(email="Lin@Example.com", username="Lin.K")
    assert api.login(email="lin@example.com")["user"]["username"] == "Lin.K"
    assert api.login(email="LIN@EXAMPLE.COM")["user"]["email"] == "Lin@example.com"
    assert api.login(username="lin.k")["user"]["email"] == "Lin@example.com"


def test_login_stamps_last_login_and_creates_a_session(app, api):
    api.register(email="stamp@example.com")
    with time_machine.travel(T0, tick=False):
        response = api.client.post("/auth/login", json={"email": "stamp@example.com", "password": PASSWORD},
                                   headers={"User-Agent": "GatehouseTest/1.0"})
    body = response.get_json()
    assert body["user"]["lastLoginAt"] == "2026-03-01T12:00:00.000Z"
    with app.app_context():
        session = db.session.get(Session, body["session"]["id"])
        assert session.user_agent == "GatehouseTest/1.0" and session.ip_address == "127.0.0.1"
        assert session.expires_at == T0 + timedelta(seconds=2592000)
        assert db.session.scalar(select(func.count()).select_from(Session)) == 2  # register + login


def test_a_device_is_upserted_by_its_id(app, api):
    api.register(email="dev@example.com")
    first = api.login(email="dev@example.com", device={"id": "abc", "name": "Old name", "platform": "ios"})
    second = api.login(email="dev@example.com",
                       device={"id": "abc", "name": "New name", "platform": "ios", "appVersion": "2.0"})
    assert first["session"]["device"]["id"] == second["session"]["device"]["id"]
    assert second["session"]["device"]["name"] == "New name"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Device)) == 1


def test_another_users_device_id_never_links_to_this_account(app, api):
    api.register(email="one@example.com")
    api.register(email="two@example.com")
    mine = api.login(email="one@example.com", device={"id": "shared", "name": "A", "platform": "ios"})
    theirs = api.login(email="two@example.com", device={"id": "shared", "name": "B", "platform": "ios"})
    assert mine["session"]["device"]["id"] != theirs["session"]["device"]["id"]
    with app.app_context():
        owners = db.session.execute(select(Device.user_id, Device.name)).all()
        assert len({owner for owner, _ in owners}) == 2


def _refusal(api, **body):
    response = api.client.post("/auth/login", json={"password": PASSWORD, **body})
    return problem(response, 401, "invalid_credentials")


def test_wrong_password_and_unknown_account_are_the_same_answer(api):
    api.register(email="known@example.com")
    wrong = _refusal(api, email="known@example.com", password="not the right password")
    unknown = _refusal(api, email="nobody@example.com")
    unknown_username = _refusal(api, username="nobody")
    assert wrong == unknown == unknown_username


@pytest.mark.parametrize("change", [{"disabled": True}, {"deleted_at": T0}])
def test_disabled_and_deleted_accounts_are_refused_the_same_way(app, api, change):
    api.register(email="gone@example.com")
    unknown = _refusal(api, email="nobody@example.com")
    with app.app_context():
        db.session.execute(update(User).values(**change))
        db.session.commit()
    assert _refusal(api, email="gone@example.com") == unknown


def test_email_and_username_together_or_neither_are_refused(api):
    problem(api.client.post("/auth/login", json={"password": PASSWORD}), 422, "validation_failed")
    problem(api.client.post("/auth/login", json={"email": "a@b.co", "username": "ab", "password": PASSWORD}),
            422, "validation_failed")


def test_an_unknown_account_is_verified_against_a_dummy_hash(app, api):
    hasher = app.extensions["gatehouse.hasher"]
    assert hasher._dummy_hash is None
    _refusal(api, email="nobody@example.com")
    # The refusal did the same argon2 work as for a real account, with the configured parameters.
    assert hasher._dummy_hash is not None and hasher._dummy_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
