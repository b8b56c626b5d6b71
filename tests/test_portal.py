"""The HTML account portal (CONTRACT §7) through the Flask test client, CSRF on, on every database leg."""
from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from sqlalchemy import select

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.models import Session, User
from gatehouse.web import HTML_CSP
from tests.actions import PASSWORD, Api, bearer
from tests.smtp import deliver, last_code

VERIFY = "Confirm your email address"
RESET = "Reset your Gatehouse password"
NEW_PASSWORD = "a brand new passphrase for the portal"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


pytestmark = pytest.mark.mail


class Portal:
    """A browser on the portal: it reads each form's CSRF token from the page, as a browser would send it."""

    def __init__(self, client):
        self.client = client

    def get(self, path: str):
        return self.client.get(path)

    def submit(self, page: str, action: str | None = None, **fields):
        """Open `page`, then post `fields` with the page's CSRF token to `action` (the page itself by default)."""
        shown = self.client.get(page)
        assert shown.status_code == 200, (page, shown.status_code, shown.headers.get("Location"))
        token = CSRF_RE.search(shown.get_data(as_text=True)).group(1)
        return self.client.post(action or page, data={"csrf_token": token, **fields})

    def login(self, identifier: str, password: str = PASSWORD):
        return self.submit("/login", identifier=identifier, password=password)

    def register(self, email: str, password: str = PASSWORD, **fields):
        return self.submit("/register", email=email, password=password, **fields)

    def session_id(self) -> str | None:
        with self.client.session_transaction() as cookie:
            return cookie.get("sid")


@pytest.fixture
def portal(client):
    return Portal(client)


@pytest.fixture
def api(app):
    return Api(app.test_client())  # a separate client: the API's caller is not the browser


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def field_error(response, field_id: str) -> str:
    """The error shown next to a field, checking the input points at it with aria-describedby."""
    html = response.get_data(as_text=True)
    found = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', html)
    assert found, f"no error next to {field_id}"
    tag = re.search(rf'<(?:input|select)[^>]*\bid="{field_id}"[^>]*>', html).group(0)
    assert f"{field_id}-error" in re.search(r'aria-describedby="([^"]*)"', tag).group(1)
    assert 'aria-invalid="true"' in tag
    return unescape(found.group(1))


def alert(response) -> str:
    found = re.search(r'<div class="error-summary" role="alert"[^>]*>(.*?)</div>', text(response), re.S)
    assert found, "no role=alert summary"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def redirected_to(response, path: str) -> None:
    assert response.status_code == 302, (response.status_code, text(response)[:800])
    assert response.headers["Location"] == path


def user_row(app, email: str) -> User:
    with app.app_context():
        return db.session.execute(select(User).where(User.email == email)).unique().scalar_one()


def mark_verified(app, email: str) -> None:
    with app.app_context():
        user = db.session.execute(select(User).where(User.email == email)).unique().scalar_one()
        user.email_verified_at = now()
        db.session.commit()


def signed_up(app, api: Api, email: str) -> dict:
    """An account made through the API, its address already confirmed."""
    body = api.register(email)
    mark_verified(app, email)
    return body


# ---- every page ----------------------------------------------------------------------------------

GUEST_PAGES = ["/login", "/register", "/forgot-password", "/reset-password"]
ACCOUNT_PAGES = ["/account", "/account/preferences", "/account/security"]


def labelled(html: str) -> None:
    """Every visible input and select has a <label for=...> naming it."""
    ids = re.findall(r'<(?:input|select)(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', html)
    assert ids
    for field_id in ids:
        assert re.search(rf'<label for="{field_id}">[^<]+</label>', html), field_id


def secured(response) -> None:
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == HTML_CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    # No inline script or style: the one script is the passkey buttons' file under /static/.
    scripts = re.findall(r"<script[^>]*>", text(response))
    assert all(tag == '<script src="/static/passkeys.js" defer>' for tag in scripts), scripts
    assert "style=" not in text(response)


def test_guest_pages_have_labelled_fields_and_security_headers(portal):
    for path in GUEST_PAGES:
        response = portal.get(path)
        assert response.status_code == 200, path
        secured(response)
        labelled(response.get_data(as_text=True))


def test_account_pages_need_a_session_and_then_show(app, portal, api):
    for path in ACCOUNT_PAGES + ["/"]:
        redirected_to(portal.get(path), "/login")
    signed_up(app, api, "pages@example.com")
    redirected_to(portal.login("pages@example.com"), "/account")
    for path in ACCOUNT_PAGES:
        response = portal.get(path)
        assert response.status_code == 200, path
        secured(response)
        labelled(response.get_data(as_text=True))
    redirected_to(portal.get("/"), "/account")
    redirected_to(portal.get("/login"), "/account")


def test_unknown_portal_pages_are_the_html_error_page(portal):
    response = portal.get("/account/nothing-here")
    assert response.status_code == 404
    secured(response)
    assert "There is no such page." in text(response)


def test_a_post_without_or_with_a_bad_csrf_token_is_refused(app, portal, api):
    signed_up(app, api, "csrf@example.com")
    for data in ({}, {"csrf_token": "forged"}):
        response = portal.client.post("/login", data={"identifier": "csrf@example.com", "password": PASSWORD, **data})
        assert response.status_code == 400
        secured(response)
        assert "This form has expired or did not come from this site" in text(response)
    assert portal.session_id() is None
    response = portal.client.post("/register", data={"email": "forged@example.com", "password": PASSWORD})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(User).where(User.email == "forged@example.com")) is None


# ---- sign-up, sign-in, sign-out ------------------------------------------------------------------

def test_registration_lands_on_the_code_page_and_the_mailed_code_verifies(app, portal, smtp_sink):
    response = portal.register("new@example.com", username="newcomer", display_name="New Comer")
    redirected_to(response, "/verify-email")
    page = portal.get("/verify-email")
    assert "new@example.com" in text(page) and "Your account is ready" in text(page)

    deliver(app)
    code = last_code(smtp_sink, "new@example.com", VERIFY)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = portal.submit("/verify-email", code=wrong)
    assert refused.status_code == 400
    assert field_error(refused, "code") == "The code is wrong, used or expired."

    redirected_to(portal.submit("/verify-email", code=code), "/account")
    assert "Your email address is verified." in text(portal.get("/account"))
    user = user_row(app, "new@example.com")
    assert user.email_verified_at is not None and user.username == "newcomer"
    with app.app_context():
        session = db.session.get(Session, portal.session_id())
        assert session.kind == "portal" and session.user_id == user.id
    redirected_to(portal.get("/verify-email"), "/account")


def test_send_again_mails_a_fresh_code(app, portal, smtp_sink):
    portal.register("again@example.com")
    redirected_to(portal.submit("/verify-email", "/verify-email/resend"), "/verify-email")
    deliver(app)
    assert len(smtp_sink.to("again@example.com", VERIFY)) == 1  # the first mail was superseded unsent
    redirected_to(portal.submit("/verify-email", code=last_code(smtp_sink, "again@example.com", VERIFY)), "/account")


def test_registration_errors_are_shown_next_to_their_fields(app, portal, api):
    response = portal.register("", password="short")
    assert response.status_code == 422
    assert field_error(response, "email") == "Email address is required."
    assert portal.session_id() is None

    response = portal.register("weak@example.com", password="short")
    assert response.status_code == 422
    assert "at least 12 characters" in field_error(response, "password")

    api.register("taken@example.com")
    response = portal.register("taken@example.com")
    assert response.status_code == 409
    assert "An account with this email address already exists." in alert(response)


def test_login_errors_are_shown_in_words(app, portal, api):
    signed_up(app, api, "errors@example.com")
    response = portal.submit("/login", identifier="errors@example.com", password="")
    assert response.status_code == 422
    assert field_error(response, "password") == "Password is required."
    assert 'value="errors@example.com"' in text(response)  # what was typed stays

    response = portal.login("errors@example.com", "not the password at all")
    assert response.status_code == 401
    assert "The email, username or password is incorrect." in alert(response)
    assert portal.session_id() is None


def test_sign_in_by_username_and_sign_out(app, portal, api):
    signed_up(app, api, "out@example.com")
    api.patch("/users/me", json={"username": "outgoing"},
              token=api.login(email="out@example.com")["tokens"]["accessToken"])
    redirected_to(portal.login("Outgoing"), "/account")
    session_id = portal.session_id()
    assert "out@example.com" in text(portal.get("/account"))

    redirected_to(portal.submit("/account", "/logout"), "/login")
    assert portal.session_id() is None
    assert "You are signed out." in text(portal.get("/login"))
    with app.app_context():
        assert db.session.get(Session, session_id).revoked_at is not None
    redirected_to(portal.get("/account"), "/login")


def test_an_unverified_sign_in_lands_on_the_code_page(app, portal, api):
    api.register("later@example.com")
    redirected_to(portal.login("later@example.com"), "/verify-email")
    assert "not confirmed yet" in text(portal.get("/account"))


def test_the_cookie_holds_only_the_session_id_with_safe_flags(app, portal, api):
    signed_up(app, api, "cookie@example.com")
    response = portal.login("cookie@example.com")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie  # plain http outside production
    value = re.match(r"session=([^;]+)", cookie).group(1)
    stored = app.session_interface.get_signing_serializer(app).loads(value)
    assert set(stored) <= {"sid", "csrf_token", "_permanent", "_flashes"}
    assert stored["sid"] == portal.session_id()
    assert "accessToken" not in text(portal.get("/account")) and "refreshToken" not in text(portal.get("/account"))


def test_the_cookie_is_secure_and_lasts_as_long_as_the_session_in_production(make_app, smtp_sink):
    app = make_app(APP_ENV="production", MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp_sink.port),
                   ARGON2_MEMORY_KIB="19456", ARGON2_TIME_COST="2", REFRESH_TOKEN_TTL="3600",
                   RATELIMIT_ENABLED="1")
    portal = Portal(app.test_client())
    redirected_to(portal.register("prod@example.com"), "/verify-email")
    with app.app_context():
        session = db.session.get(Session, portal.session_id())
        assert session.expires_at - session.created_at == timedelta(seconds=3600)
    assert app.permanent_session_lifetime == timedelta(seconds=3600)
    response = portal.get("/verify-email")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_revocation_through_the_api_signs_the_browser_out(app, portal, api):
    signed_up(app, api, "revoked@example.com")
    portal.login("revoked@example.com")
    assert portal.get("/account").status_code == 200
    token = api.login(email="revoked@example.com")["tokens"]["accessToken"]
    assert api.post("/auth/logout", json={"allSessions": True}, token=token).status_code == 204

    redirected_to(portal.get("/account"), "/login")
    assert "Your session has ended" in text(portal.get("/login"))
    assert portal.session_id() is None


def test_a_deleted_account_is_signed_out_at_its_next_request(app, portal, api):
    signed_up(app, api, "gone@example.com")
    portal.login("gone@example.com")
    with app.app_context():
        user = db.session.execute(select(User).where(User.email == "gone@example.com")).unique().scalar_one()
        user.disabled = True
        db.session.commit()
    redirected_to(portal.get("/account/security"), "/login")


# ---- profile and preferences ---------------------------------------------------------------------

def test_profile_changes_reach_the_database_and_the_api(app, portal, api):
    signed_up(app, api, "profile@example.com")
    portal.login("profile@example.com")
    before = user_row(app, "profile@example.com").version
    response = portal.submit("/account", username="ProFile", display_name="Pro File", avatar_url="",
                             region="FR", currency="JPY", locale="fr", timezone="Europe/Paris")
    assert response.status_code == 422
    assert field_error(response, "currency").startswith("Currency is not accepted in region FR")
    assert user_row(app, "profile@example.com").version == before

    # The currency left as it was: the new region's own is taken.
    response = portal.submit("/account", username="ProFile", display_name="Pro File", avatar_url="",
                             region="FR", currency="USD", locale="fr", timezone="Europe/Paris")
    redirected_to(response, "/account")
    assert "Your changes are saved." in text(portal.get("/account"))
    user = user_row(app, "profile@example.com")
    assert (user.username, user.display_name, user.region, user.currency, user.locale, user.timezone) == (
        "ProFile", "Pro File", "FR", "EUR", "fr", "Europe/Paris")
    assert user.version == before + 1

    token = api.login(email="profile@example.com")["tokens"]["accessToken"]
    me = api.get("/users/me", token=token).get_json()["user"]
    assert (me["username"], me["displayName"], me["region"], me["currency"]) == ("ProFile", "Pro File", "FR", "EUR")

    response = portal.submit("/account", username="", display_name="Pro File", avatar_url="http://insecure.test/a.png",
                             region="FR", currency="EUR", locale="fr", timezone="Nowhere/Else")
    assert response.status_code == 422
    # The account speaks French since locale "fr" was saved: so do its refusals.
    assert field_error(response, "avatar_url") == "URL de l’avatar doit être une URL https."
    assert field_error(response, "timezone").startswith("Fuseau horaire doit être un nom de fuseau horaire IANA")
    assert user_row(app, "profile@example.com").username == "ProFile"

    redirected_to(portal.submit("/account", username="", display_name="", avatar_url="", region="FR",
                                currency="EUR", locale="fr", timezone="Europe/Paris"), "/account")
    user = user_row(app, "profile@example.com")
    assert user.username is None and user.display_name is None


def test_a_profile_changed_elsewhere_is_not_overwritten(app, portal, api):
    signed_up(app, api, "stale@example.com")
    portal.login("stale@example.com")
    shown = portal.get("/account")
    token = CSRF_RE.search(text(shown)).group(1)
    version = re.search(r'name="version" type="hidden" value="(\d+)"', text(shown)).group(1)
    api.patch("/users/me", json={"displayName": "Elsewhere"},
              token=api.login(email="stale@example.com")["tokens"]["accessToken"])
    response = portal.client.post("/account", data={
        "csrf_token": token, "version": version, "display_name": "Here",
        "region": "US", "currency": "USD", "locale": "en", "timezone": "UTC"})
    redirected_to(response, "/account")
    assert "changed elsewhere" in text(portal.get("/account"))
    assert user_row(app, "stale@example.com").display_name == "Elsewhere"


def test_preferences_are_merged_and_validated(app, portal, api):
    signed_up(app, api, "prefs@example.com")
    portal.login("prefs@example.com")
    page = text(portal.get("/account/preferences"))
    assert re.search(r'<input checked id="notifications_email"|id="notifications_email"[^>]*checked', page)

    form = {"notifications_push": "y", "notifications_digest": "daily", "ai_enabled": "y", "ai_model": "default",
            "ai_data_sharing": "y", "focus_default_minutes": "50", "focus_break_minutes": "10",
            "focus_daily_goal_minutes": "240"}
    redirected_to(portal.submit("/account/preferences", **form), "/account/preferences")
    token = api.login(email="prefs@example.com")["tokens"]["accessToken"]
    preferences = api.get("/users/me", token=token).get_json()["user"]["preferences"]
    assert preferences == {
        "notifications": {"email": False, "push": True, "digest": "daily"},
        "ai": {"enabled": True, "model": "default", "dataSharing": True},
        "focus": {"defaultMinutes": 50, "breakMinutes": 10, "dailyGoalMinutes": 240}}

    response = portal.submit("/account/preferences", **{**form, "focus_default_minutes": "0"})
    assert response.status_code == 422
    assert field_error(response, "focus_default_minutes") == (
        "Focus session (minutes): Input should be greater than or equal to 1")
    response = portal.submit("/account/preferences", **{**form, "focus_break_minutes": "soon"})
    assert response.status_code == 422
    assert field_error(response, "focus_break_minutes") == "Not a valid integer value."
    assert api.get("/users/me", token=token).get_json()["user"]["preferences"]["focus"]["defaultMinutes"] == 50


# ---- security --------------------------------------------------------------------------------------

def test_password_change_signs_out_every_other_session(app, portal, api):
    signed_up(app, api, "pwchange@example.com")
    portal.login("pwchange@example.com")
    token = api.login(email="pwchange@example.com")["tokens"]["accessToken"]

    response = portal.submit("/account/security", "/account/security/password",
                             current_password="not it at all", new_password=NEW_PASSWORD)
    assert response.status_code == 401
    assert field_error(response, "current_password") == "The email, username or password is incorrect."
    response = portal.submit("/account/security", "/account/security/password",
                             current_password=PASSWORD, new_password="my pwchange and more words")
    assert response.status_code == 422
    assert "must not contain your email or username" in field_error(response, "new_password")

    response = portal.submit("/account/security", "/account/security/password",
                             current_password=PASSWORD, new_password=NEW_PASSWORD)
    redirected_to(response, "/account/security")
    assert "2 other sessions were signed out" in text(portal.get("/account/security"))  # register's and login's
    assert api.get("/users/me", token=token).status_code == 401
    assert portal.get("/account/security").status_code == 200
    api.login(email="pwchange@example.com", password=NEW_PASSWORD)


def test_sessions_and_devices_each_have_their_own_revoke_form(app, portal, api):
    signed_up(app, api, "devices@example.com")
    portal.login("devices@example.com")
    phone = api.login(email="devices@example.com", device={"id": "phone-1", "name": "My phone", "platform": "ios"})
    laptop = api.login(email="devices@example.com", device={"id": "lap-1", "name": "Laptop app", "platform": "macos"})
    page = text(portal.get("/account/security"))
    assert "This browser" in page and "My phone" in page and "Laptop app" in page
    assert page.count("/revoke\"") == 4 and page.count("/forget\"") == 2  # with the API registration's session

    phone_session = phone["session"]["id"]
    redirected_to(portal.submit("/account/security", f"/account/security/sessions/{phone_session}/revoke"),
                  "/account/security")
    assert api.get("/users/me", token=phone["tokens"]["accessToken"]).status_code == 401

    device_id = re.search(r'/account/security/devices/([0-9a-f-]+)/forget"[^<]*>\s*<input[^>]*>\s*'
                          r'<button[^>]*>Remove<span class="visually-hidden"> Laptop app', page)
    assert device_id
    redirected_to(portal.submit("/account/security", f"/account/security/devices/{device_id.group(1)}/forget"),
                  "/account/security")
    assert api.get("/users/me", token=laptop["tokens"]["accessToken"]).status_code == 401
    assert "Laptop app" not in text(portal.get("/account/security"))

    assert portal.submit("/account/security", "/account/security/sessions/not-an-id/revoke").status_code == 404
    redirected_to(portal.submit("/account/security", f"/account/security/sessions/{portal.session_id()}/revoke"),
                  "/login")
    redirected_to(portal.get("/account/security"), "/login")


def test_delete_account_asks_for_the_password(app, portal, api):
    signed_up(app, api, "delete@example.com")
    portal.login("delete@example.com")
    response = portal.submit("/account/security", "/account/security/delete", password="")
    assert response.status_code == 422
    assert field_error(response, "password") == "Password is required."
    response = portal.submit("/account/security", "/account/security/delete", password="wrong wrong wrong")
    assert response.status_code == 401
    assert field_error(response, "password") == "The email, username or password is incorrect."

    redirected_to(portal.submit("/account/security", "/account/security/delete", password=PASSWORD), "/login")
    assert "Your account was deleted." in text(portal.get("/login"))
    assert user_row(app, "delete@example.com").deleted_at is not None
    assert portal.login("delete@example.com").status_code == 401


# ---- recovery ------------------------------------------------------------------------------------

def test_forgot_and_reset_password_with_the_mailed_code(app, portal, api, smtp_sink):
    signed_up(app, api, "reset@example.com")
    token = api.login(email="reset@example.com")["tokens"]["accessToken"]
    redirected_to(portal.submit("/forgot-password", email="reset@example.com"), "/reset-password")
    page = portal.get("/reset-password")
    assert "a reset code is on its way" in text(page) and 'value="reset@example.com"' in text(page)

    deliver(app)
    code = last_code(smtp_sink, "reset@example.com", RESET)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    response = portal.submit("/reset-password", email="reset@example.com", code=wrong, new_password=NEW_PASSWORD)
    assert response.status_code == 400
    assert field_error(response, "code") == "The code is wrong, used or expired."
    response = portal.submit("/reset-password", email="reset@example.com", code=code, new_password="short")
    assert response.status_code == 422
    assert "at least 12 characters" in field_error(response, "new_password")

    response = portal.submit("/reset-password", email="reset@example.com", code=code, new_password=NEW_PASSWORD)
    redirected_to(response, "/login")
    assert "Sign in with the new password" in text(portal.get("/login"))
    assert api.get("/users/me", token=token).status_code == 401
    redirected_to(portal.login("reset@example.com", NEW_PASSWORD), "/account")


def test_forgot_password_answers_the_same_for_an_unknown_address(portal, smtp_sink):
    redirected_to(portal.submit("/forgot-password", email="nobody@example.com"), "/reset-password")
    assert "a reset code is on its way" in text(portal.get("/reset-password"))
    response = portal.submit("/forgot-password", email="not an address")
    assert response.status_code == 422
    assert field_error(response, "email").startswith("Email address:")


# ---- rate limits ---------------------------------------------------------------------------------

def test_the_portal_forms_share_the_apis_auth_bucket(make_app):
    app = make_app(RATELIMIT_ENABLED="1")
    portal, api = Portal(app.test_client()), Api(app.test_client())
    for _ in range(5):
        api.login(email="nobody@example.com", expect=401)
    for path in ("/login", "/register", "/forgot-password", "/reset-password", "/login"):
        assert portal.submit(path, email="nobody@example.com").status_code != 429, path
    # Showing the forms took none of the ten; the eleventh sign-in attempt from here is refused.
    response = portal.login("nobody@example.com")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    secured(response)
    assert "Too many requests" in text(response)
    response = api.client.post("/auth/login", json={"email": "nobody@example.com", "password": PASSWORD},
                               headers=bearer(None))
    assert response.status_code == 429
