"""/users/me/sessions and /users/me/devices: the caller's own rows only, revocation effective at once."""
from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select, update

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import Device, Session
from gatehouse.realtime.bus import bus
from tests.actions import problem

PHONE = {"id": "phone-1", "name": "Pixel 9", "platform": "android", "appVersion": "3.2.1"}
LAPTOP = {"id": "laptop-1", "name": "Work laptop", "platform": "macos"}


def sign_in_everywhere(api):
    """An account with a session from registration, two on the phone and one on the laptop."""
    body = api.register()
    email = body["user"]["email"]
    phone_a = api.login(email=email, device=PHONE)
    phone_b = api.login(email=email, device=PHONE)
    laptop = api.login(email=email, device=LAPTOP)
    return {"id": body["user"]["id"], "token": body["tokens"]["accessToken"], "session": body["session"]["id"],
            "phone": [phone_a, phone_b], "laptop": laptop,
            "phone_device": phone_a["session"]["device"]["id"], "laptop_device": laptop["session"]["device"]["id"]}


@pytest.fixture
def alice(api):
    return sign_in_everywhere(api)


@pytest.fixture
def bob(api):
    return sign_in_everywhere(api)


def revoked_at(app, session_id):
    with app.app_context():
        return db.session.get(Session, session_id).revoked_at


def live_ids(app, user_id):
    with app.app_context():
        return set(db.session.scalars(select(Session.id).where(Session.user_id == user_id,
                                                               Session.revoked_at.is_(None))))


def device_ids(app, user_id):
    with app.app_context():
        return set(db.session.scalars(select(Device.id).where(Device.user_id == user_id)))


# ---- sessions ----------------------------------------------------------------------------------

def test_the_list_holds_the_callers_live_sessions_with_their_devices(api, alice, bob):
    response = api.get("/users/me/sessions", alice["token"])
    assert response.status_code == 200
    listed = response.get_json()["sessions"]
    assert len(listed) == 4
    by_id = {s["id"]: s for s in listed}
    assert by_id[alice["session"]]["current"] is True
    assert [s["current"] for s in listed].count(True) == 1
    assert by_id[alice["session"]]["device"] is None
    phone = by_id[alice["phone"][0]["session"]["id"]]["device"]
    assert phone == {"id": alice["phone_device"], "name": "Pixel 9", "platform": "android", "appVersion": "3.2.1",
                     "lastSeenAt": phone["lastSeenAt"]}
    assert set(by_id[alice["session"]]) == {"id", "current", "createdAt", "lastSeenAt", "expiresAt", "ipAddress",
                                            "userAgent", "device"}
    assert not set(by_id) & live_ids(api.client.application, bob["id"])


def test_revoked_and_expired_sessions_are_not_listed(app, api, alice):
    api.post("/auth/logout", {}, alice["phone"][0]["tokens"]["accessToken"])
    expired = alice["phone"][1]["session"]["id"]
    with app.app_context():
        db.session.execute(update(Session).where(Session.id == expired).values(expires_at=now() - timedelta(1)))
        db.session.commit()
    listed = {s["id"] for s in api.get("/users/me/sessions", alice["token"]).get_json()["sessions"]}
    assert listed == {alice["session"], alice["laptop"]["session"]["id"]}


def test_a_revoked_session_is_refused_from_the_next_request(app, api, alice):
    events = []
    with app.app_context():
        unsubscribe = bus().subscribe(lambda user_id, event, data: events.append((user_id, event, data)))
    victim = alice["laptop"]
    assert api.get("/users/me", victim["tokens"]["accessToken"]).status_code == 200
    response = api.delete(f"/users/me/sessions/{victim['session']['id']}", token=alice["token"])
    unsubscribe()
    assert response.status_code == 204
    assert revoked_at(app, victim["session"]["id"]) is not None
    problem(api.get("/users/me", victim["tokens"]["accessToken"]), 401, "token_revoked")
    problem(api.post("/auth/refresh", {"refreshToken": victim["tokens"]["refreshToken"]}), 401, "token_revoked")
    assert [e for e in events if e[1] != "security:event"] == [
        (alice["id"], "session:revoked", {"sessionId": victim["session"]["id"]})]
    assert api.get("/users/me", alice["token"]).status_code == 200


def test_the_caller_may_revoke_its_own_session(api, alice):
    assert api.delete(f"/users/me/sessions/{alice['session']}", token=alice["token"]).status_code == 204
    problem(api.get("/users/me", alice["token"]), 401, "token_revoked")


@pytest.mark.parametrize("session_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "x" * 300, "%00", "%E2%80%AE", "1%27%20OR%20%271%27=%271"])
def test_an_unknown_or_malformed_session_id_is_404(app, api, alice, session_id):
    problem(api.delete(f"/users/me/sessions/{session_id}", token=alice["token"]), 404, "not_found")
    assert len(live_ids(app, alice["id"])) == 4


def test_an_already_revoked_session_is_404(api, alice):
    path = f"/users/me/sessions/{alice['laptop']['session']['id']}"
    assert api.delete(path, token=alice["token"]).status_code == 204
    problem(api.delete(path, token=alice["token"]), 404, "not_found")


# ---- devices -----------------------------------------------------------------------------------

def test_the_list_holds_the_callers_devices(api, alice, bob):
    response = api.get("/users/me/devices", alice["token"])
    assert response.status_code == 200
    listed = response.get_json()["devices"]
    assert {d["id"] for d in listed} == {alice["phone_device"], alice["laptop_device"]}
    phone = next(d for d in listed if d["id"] == alice["phone_device"])
    assert (phone["name"], phone["platform"], phone["appVersion"]) == ("Pixel 9", "android", "3.2.1")


def test_forgetting_a_device_revokes_every_session_on_it(app, api, alice):
    response = api.delete(f"/users/me/devices/{alice['phone_device']}", token=alice["token"])
    assert response.status_code == 204
    for signed_in in alice["phone"]:
        assert revoked_at(app, signed_in["session"]["id"]) is not None
        problem(api.get("/users/me", signed_in["tokens"]["accessToken"]), 401, "token_revoked")
    assert live_ids(app, alice["id"]) == {alice["session"], alice["laptop"]["session"]["id"]}
    assert device_ids(app, alice["id"]) == {alice["laptop_device"]}
    assert [d["id"] for d in api.get("/users/me/devices", alice["token"]).get_json()["devices"]] == [
        alice["laptop_device"]]


def test_forgetting_the_callers_own_device_signs_it_out(api, alice):
    token = alice["laptop"]["tokens"]["accessToken"]
    assert api.delete(f"/users/me/devices/{alice['laptop_device']}", token=token).status_code == 204
    problem(api.get("/users/me", token), 401, "token_revoked")


def test_a_device_signs_in_again_after_being_forgotten(api, alice):
    api.delete(f"/users/me/devices/{alice['phone_device']}", token=alice["token"])
    again = api.login(email=api.get("/users/me", alice["token"]).get_json()["user"]["email"], device=PHONE)
    assert again["session"]["device"]["name"] == "Pixel 9"
    assert again["session"]["device"]["id"] != alice["phone_device"]


@pytest.mark.parametrize("device_id", ["phone-1", "nope", "00000000-0000-0000-0000-000000000000", "%00", "y" * 300])
def test_an_unknown_device_id_is_404(app, api, alice, device_id):
    problem(api.delete(f"/users/me/devices/{device_id}", token=alice["token"]), 404, "not_found")
    assert len(device_ids(app, alice["id"])) == 2


# ---- tenant isolation --------------------------------------------------------------------------

def test_no_id_route_reaches_another_users_rows(app, api, alice, bob):
    bob_live = live_ids(app, bob["id"])
    bob_devices = device_ids(app, bob["id"])
    for session_id in bob_live:
        problem(api.delete(f"/users/me/sessions/{session_id}", token=alice["token"]), 404, "not_found")
    for device_id in bob_devices:
        problem(api.delete(f"/users/me/devices/{device_id}", token=alice["token"]), 404, "not_found")
    assert live_ids(app, bob["id"]) == bob_live
    assert device_ids(app, bob["id"]) == bob_devices
    assert api.get("/users/me", bob["token"]).status_code == 200
    assert {s["id"] for s in api.get("/users/me/sessions", alice["token"]).get_json()["sessions"]}.isdisjoint(bob_live)
    assert {d["id"] for d in api.get("/users/me/devices", alice["token"]).get_json()["devices"]}.isdisjoint(bob_devices)


def test_same_client_device_id_for_two_users_stays_two_devices(api, alice, bob):
    assert alice["phone_device"] != bob["phone_device"]


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/users/me/sessions"), ("delete", "/users/me/sessions/x"),
    ("get", "/users/me/devices"), ("delete", "/users/me/devices/x")])
def test_every_route_needs_a_token(api, method, path):
    problem(getattr(api, method)(path), 401, "token_invalid")


def test_listing_renews_the_callers_last_seen_at(api, alice):
    with time_machine.travel(now() + timedelta(minutes=5)):
        listed = api.get("/users/me/sessions", alice["token"]).get_json()["sessions"]
    mine = next(s for s in listed if s["current"])
    other = next(s for s in listed if s["id"] == alice["laptop"]["session"]["id"])
    assert mine["lastSeenAt"] > other["lastSeenAt"]


def test_the_caller_is_read_in_one_row_without_the_password_hash(app, api):
    from gatehouse.errors import TokenRevoked
    from gatehouse.models import User
    from gatehouse.services import sessions

    body = api.login(email=api.register()["user"]["email"], device=PHONE)
    claims = jwt_claims(body["tokens"]["accessToken"])
    with app.app_context():
        caller = sessions.live_caller(claims["sid"], now(), user_id=claims["sub"], claims=claims)
        assert not hasattr(caller.snapshot.user, "password_hash")
        assert caller.snapshot.session.device.name == PHONE["name"]
        assert caller.snapshot.user.settings is not None
        assert caller.user.password_hash.startswith("$argon2id$")  # the ORM object, loaded when asked for
        db.session.execute(update(Session).values(revoked_at=now()))
        db.session.commit()
        with pytest.raises(TokenRevoked):
            sessions.live_caller(claims["sid"], now())
        db.session.execute(update(Session).values(revoked_at=None))
        db.session.commit()
        late = sessions.live_caller(claims["sid"], now())
        db.session.query(User).delete()
        db.session.commit()
        with pytest.raises(TokenRevoked):  # erased between the authenticating read and the ORM load
            late.session


def jwt_claims(token: str) -> dict:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})
