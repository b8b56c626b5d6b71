"""New-sign-in alerts (CONTRACT §11): a mail for a sign-in from a device or network the account has
not used in 90 days, none for the first sign-in or a known device; "this wasn't me" by POST only,
once; and `security:event` live on the user's own sockets."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
import time_machine
from flask_migrate import downgrade, upgrade
from sqlalchemy import insert, select, text

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import LinkToken, SecurityEvent, Session, User
from tests.actions import PASSWORD, problem
from tests.concurrency import at_once
from tests.smtp import deliver, text_of

NEW_SIGN_IN = "New sign-in to your Gatehouse account"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PHONE = {"id": "phone-1", "name": "Pixel", "platform": "android"}


pytestmark = pytest.mark.mail(ACCESS_TOKEN_TTL="86400")


@pytest.fixture
def erin(api):
    body = api.register(email="erin@example.com")
    api.login(email="erin@example.com")  # the first sign-in after registration
    return {"id": body["user"]["id"], "token": body["tokens"]["accessToken"]}


def sign_in(api, address: str = "127.0.0.1", user_agent: str = FIREFOX, **body):
    response = api.client.post("/auth/login", json={"email": "erin@example.com", "password": PASSWORD, **body},
                               headers={"User-Agent": user_agent}, environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def alerts(app, sink):
    deliver(app)
    return sink.to("erin@example.com", NEW_SIGN_IN)


def not_me_token(message) -> str:
    return re.search(r"/not-me\?token=([A-Za-z0-9_\-]+)", text_of(message)).group(1)


def test_no_mail_for_registration_and_the_first_sign_in(app, api, smtp_sink, erin):
    assert alerts(app, smtp_sink) == []
    with app.app_context():
        assert db.session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "new_device")).all() == []


def test_one_mail_for_a_new_device_none_when_it_signs_in_again(app, api, smtp_sink, erin):
    signed = sign_in(api, device=PHONE)
    [mail] = alerts(app, smtp_sink)
    text = text_of(mail)
    assert "Firefox on Linux" in text and "127.0.0.1" in text and "(Pixel)" in text
    assert "/not-me?token=" in text
    sign_in(api, address="10.9.8.7", device=PHONE)  # a known device, even from another network
    assert len(alerts(app, smtp_sink)) == 1
    with app.app_context():
        [event] = db.session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "new_device")).all()
        assert event.session_id == signed["session"]["id"] and event.device_id == signed["session"]["device"]["id"]


def test_a_new_network_alerts_a_known_one_does_not(app, api, smtp_sink, erin):
    sign_in(api, address="127.0.0.200")  # the same /24 as the registration's 127.0.0.1
    assert alerts(app, smtp_sink) == []
    sign_in(api, address="192.0.2.10")
    assert len(alerts(app, smtp_sink)) == 1
    sign_in(api, address="192.0.2.99")
    assert len(alerts(app, smtp_sink)) == 1
    sign_in(api, address="2001:db8:1:2::5")
    sign_in(api, address="2001:db8:1:2::ffff")  # the same /64
    assert len(alerts(app, smtp_sink)) == 2


def test_a_device_unused_for_90_days_is_new_again(app, api, smtp_sink, erin):
    sign_in(api, device=PHONE)
    with time_machine.travel(now() + timedelta(days=89)):
        sign_in(api, device=PHONE)
    assert len(alerts(app, smtp_sink)) == 1
    with time_machine.travel(now() + timedelta(days=89 + 91)):
        sign_in(api, device=PHONE)
        assert len(alerts(app, smtp_sink)) == 2  # delivered when it is due: then


def test_not_me_revokes_that_session_locks_the_password_and_works_once(app, api, smtp_sink, erin):
    intruder = sign_in(api, address="203.0.113.7", device={"id": "unknown", "name": "Box", "platform": "linux"})
    token = not_me_token(alerts(app, smtp_sink)[0])
    intruder_session = intruder["session"]["id"]

    # A link scanner's GET shows a question and changes nothing.
    page = api.client.get(f"/not-me?token={token}")
    assert page.status_code == 200 and "203.0.113.7" in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Session, intruder_session).revoked_at is None
        assert db.session.scalar(select(LinkToken.used_at).where(LinkToken.session_id == intruder_session)) is None
        assert db.session.get(User, erin["id"]).password_locked_at is None

    assert api.post("/auth/not-me", {"token": token}).status_code == 200
    with app.app_context():
        assert db.session.get(Session, intruder_session).revoked_at is not None
        assert db.session.get(User, erin["id"]).password_locked_at is not None
        [event] = db.session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "not_me")).all()
        assert event.session_id == intruder_session
    problem(api.get("/users/me", intruder["tokens"]["accessToken"]), 401, "token_revoked")
    assert api.get("/users/me", erin["token"]).status_code == 200  # the owner's own session stays
    problem(api.post("/auth/login", {"email": "erin@example.com", "password": PASSWORD}), 401, "invalid_credentials")
    problem(api.post("/auth/not-me", {"token": token}), 400, "invalid_code")
    problem(api.post("/auth/not-me", {"token": "made-up"}), 400, "invalid_code")
    with app.app_context():
        assert len(db.session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "not_me")).all()) == 1


def test_a_not_me_link_lapses_after_seven_days(app, api, smtp_sink, erin):
    sign_in(api, device=PHONE)
    token = not_me_token(alerts(app, smtp_sink)[0])
    with time_machine.travel(now() + timedelta(days=7, seconds=1)):
        problem(api.post("/auth/not-me", {"token": token}), 400, "invalid_code")


@pytest.mark.slow
def test_a_sign_in_elsewhere_reaches_the_users_own_sockets_as_security_event(server):
    auth = server.register()
    sock = server.connect(token=auth["tokens"]["accessToken"])
    other = server.register()
    elsewhere = server.call("POST", "/auth/login", json={"email": auth["user"]["email"], "password": PASSWORD,
                                                         "device": PHONE})
    assert elsewhere.status_code == 200
    data = sock.next_event("security:event")
    assert data["kind"] == "signed_in" and data["sessionId"] == elsewhere.json()["session"]["id"]
    assert data["device"]["name"] == "Pixel" and data["ipAddress"] == "127.0.0.1"
    assert set(data) == {"id", "kind", "at", "ipAddress", "userAgent", "sessionId", "device", "detail"}
    stranger = server.connect(token=other["tokens"]["accessToken"])
    server.call("POST", "/auth/login", json={"email": auth["user"]["email"], "password": PASSWORD})
    assert sock.next_event("security:event")["kind"] == "signed_in"
    with pytest.raises(Exception):
        stranger.next_event("security:event", timeout=1)
    sock.close()
    stranger.close()


def test_concurrent_uses_of_one_not_me_link_act_once(app, api, smtp_sink, erin, leg):
    if leg != "postgres":
        pytest.skip("concurrent writers: the PostgreSQL leg")
    sign_in(api, device=PHONE)
    token = not_me_token(alerts(app, smtp_sink)[0])
    statuses = at_once(app, 6, lambda client: client.post("/auth/not-me", json={"token": token}).status_code)
    assert sorted(statuses) == [200] + [400] * 5
    with app.app_context():
        assert len(db.session.scalars(select(SecurityEvent).where(SecurityEvent.kind == "not_me")).all()) == 1


def test_a_known_network_stays_known_however_many_sessions_came_after_it(app, api, smtp_sink, erin):
    """The check asks the database whether the network was used lately (one indexed look-up), not the
    account's latest few hundred sessions: 600 newer sessions elsewhere do not make it new."""
    sign_in(api, address="192.0.2.10")
    assert len(alerts(app, smtp_sink)) == 1
    with app.app_context():
        mine = db.session.get(User, erin["id"])
        moment = now()
        db.session.execute(insert(Session), [
            {"id": str(uuid.uuid4()), "user_id": mine.id, "kind": "api", "created_at": moment,
             "last_seen_at": moment + timedelta(seconds=n + 1), "expires_at": moment + timedelta(days=30),
             "ip_address": f"198.51.100.{n % 250}", "network": "198.51.100.0/24"} for n in range(600)])
        db.session.commit()
    sign_in(api, address="192.0.2.99")
    assert len(alerts(app, smtp_sink)) == 1
    sign_in(api, address="203.0.113.1")
    assert len(alerts(app, smtp_sink)) == 2


def test_the_migration_gives_earlier_sessions_their_network(app, api, erin):
    with app.app_context():
        downgrade(revision="0007")  # the schema just before sessions had a network
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE sessions SET ip_address = '2001:db8:1:2::5'"))
            conn.execute(text("INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at, "
                              "ip_address, amr, aal) SELECT 'earlier-v4', user_id, 'api', created_at, last_seen_at, "
                              "expires_at, '192.0.2.77', 'pwd', 1 FROM sessions LIMIT 1"))
            conn.execute(text("INSERT INTO sessions (id, user_id, kind, created_at, last_seen_at, expires_at, "
                              "amr, aal) SELECT 'earlier-none', user_id, 'api', created_at, last_seen_at, "
                              "expires_at, 'pwd', 1 FROM sessions LIMIT 1"))
        upgrade()
        with db.engine.connect() as conn:
            networks = dict(conn.execute(text("SELECT id, network FROM sessions")).all())
        db.engine.dispose()
    assert networks.pop("earlier-v4") == "192.0.2.0/24"
    assert networks.pop("earlier-none") is None
    assert set(networks.values()) == {"2001:db8:1:2::/64"}
