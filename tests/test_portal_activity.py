"""The portal's side of §10 and §11: "Change email" with its code step, the revert page, the activity
timeline in words with "Sign out this session", and "this wasn't me" asked by a POST button."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from gatehouse.extensions import db
from gatehouse.models import Session, User
from tests.actions import PASSWORD, Api
from tests.smtp import deliver, last_code, text_of
from tests.test_portal import CSRF_RE, Portal, text

CODE_MAIL = "Confirm your new email address"
NOTICE = "email address of your Gatehouse account was changed"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


pytestmark = pytest.mark.mail


@pytest.fixture
def portal(client):
    return Portal(client)


@pytest.fixture
def api(app):
    return Api(app.test_client())


@pytest.fixture
def signed_in(portal, api):
    api.register(email="fay@example.com")
    assert portal.login("fay@example.com").status_code == 302
    return portal


def test_change_email_from_the_profile_with_the_code_step(app, signed_in, smtp_sink):
    profile = signed_in.get("/account")
    assert 'href="/account/email"' in profile.get_data(as_text=True)
    response = signed_in.submit("/account/email", new_email="fay.new@example.com")
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/email/confirm")
    deliver(app)
    code = last_code(smtp_sink, "fay.new@example.com", CODE_MAIL)
    wrong = signed_in.submit("/account/email/confirm", code=f"{(int(code) + 1) % 1_000_000:06d}")
    assert wrong.status_code == 400 and 'id="code-error"' in wrong.get_data(as_text=True)
    done = signed_in.submit("/account/email/confirm", code=code)
    assert done.status_code == 302
    assert "fay.new@example.com" in text(signed_in.get("/account"))


def test_a_taken_address_is_shown_next_to_its_field(app, signed_in, api):
    api.register(email="taken@example.com")
    response = signed_in.submit("/account/email", new_email="taken@example.com")
    assert response.status_code == 409
    assert "An account with this email address already exists." in text(response)


def test_the_revert_link_asks_first_and_a_post_undoes_the_change(app, client, signed_in, smtp_sink):
    signed_in.submit("/account/email", new_email="elsewhere@example.com")
    deliver(app)
    signed_in.submit("/account/email/confirm", code=last_code(smtp_sink, "elsewhere@example.com", CODE_MAIL))
    deliver(app)
    [notice] = smtp_sink.to("fay@example.com", NOTICE)
    link = re.search(r"http://\S+/account/email/revert\?token=\S+", text_of(notice)).group(0)
    path = link.split("8000", 1)[1]
    visitor = Portal(app.test_client())
    page = visitor.get(path)
    assert page.status_code == 200 and "Undo the change" in text(page)
    with app.app_context():
        assert db.session.scalar(select(User.email)) == "elsewhere@example.com"  # a GET changes nothing
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    csrf = CSRF_RE.search(page.get_data(as_text=True)).group(1)
    response = visitor.client.post("/account/email/revert", data={"csrf_token": csrf, "token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/reset-password")
    with app.app_context():
        assert db.session.scalar(select(User.email)) == "fay@example.com"
    again = visitor.submit(path, "/account/email/revert", token=token)
    assert again.status_code == 400 and "This link has expired or was already used." in text(again)


def test_the_activity_page_in_words_with_sign_out_this_session(app, signed_in, api):
    other = api.client.post("/auth/login", json={"email": "fay@example.com", "password": PASSWORD},
                            headers={"User-Agent": FIREFOX}).get_json()
    page = signed_in.get("/account/activity")
    assert page.status_code == 200
    shown = text(page)
    assert "Signed in from Firefox on Linux · 127.0.0.1 · " in shown
    assert 'aria-current="page"' in page.get_data(as_text=True)
    action = f"/account/activity/sessions/{other['session']['id']}/revoke"
    assert action in shown
    csrf = CSRF_RE.search(page.get_data(as_text=True)).group(1)
    assert signed_in.client.post(action, data={"csrf_token": csrf}).status_code == 302
    with app.app_context():
        assert db.session.get(Session, other["session"]["id"]).revoked_at is not None
    assert action not in text(signed_in.get("/account/activity"))  # no button for an ended session


def test_the_activity_page_pages_and_speaks_german(app, signed_in, api):
    for _ in range(25):
        api.login(email="fay@example.com")
    first = text(signed_in.get("/account/activity"))
    older = re.search(r'href="(/account/activity\?cursor=[^"]+)"', first).group(1)
    second = signed_in.get(older)
    assert second.status_code == 200 and "Newest" in text(second)
    signed_in.submit("/account", locale="de", username="", display_name="", avatar_url="", region="US",
                     currency="USD", timezone="UTC", version="1")
    german = text(signed_in.get("/account/activity"))
    assert "Sicherheitsaktivität" in german and "Angemeldet" in german


def test_not_me_page_is_a_question_and_its_button_ends_that_sign_in(app, api, smtp_sink):
    api.register(email="gil@example.com")
    api.login(email="gil@example.com")
    intruder = api.client.post("/auth/login", json={"email": "gil@example.com", "password": PASSWORD},
                               environ_base={"REMOTE_ADDR": "198.51.100.4"}).get_json()
    deliver(app)
    [mail] = smtp_sink.to("gil@example.com", "New sign-in")
    token = re.search(r"/not-me\?token=([A-Za-z0-9_\-]+)", text_of(mail)).group(1)
    visitor = Portal(app.test_client())
    page = visitor.get(f"/not-me?token={token}")
    assert page.status_code == 200 and "198.51.100.4" in text(page)
    with app.app_context():
        assert db.session.get(Session, intruder["session"]["id"]).revoked_at is None
    csrf = CSRF_RE.search(page.get_data(as_text=True)).group(1)
    response = visitor.client.post("/not-me", data={"csrf_token": csrf, "token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/forgot-password")
    with app.app_context():
        assert db.session.get(Session, intruder["session"]["id"]).revoked_at is not None
