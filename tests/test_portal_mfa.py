"""Two-step verification in the portal without JavaScript: TOTP set up from the page, recovery codes shown
once, the second-step page, reauthentication before changes; through the test client with CSRF on."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html import unescape
from urllib.parse import unquote

import pytest

from tests.actions import Api
from tests.mfa import code
from tests.test_portal import Portal, field_error, mark_verified, redirected_to, text

T0 = datetime(2026, 3, 4, 8, 0, 5, tzinfo=timezone.utc)
SECRET_RE = re.compile(r'<code class="secret" id="totp-secret">([A-Z2-7]+)</code>')


@pytest.fixture
def portal(client):
    return Portal(client)


@pytest.fixture
def signed_in(app, portal, clock):
    email = "steps@example.com"
    Api(app.test_client()).register(email)
    mark_verified(app, email)
    redirected_to(portal.login(email), "/account")
    return email


def set_up_totp(portal) -> tuple[str, list[str]]:
    redirected_to(portal.submit("/account/security", "/account/security/totp"), "/account/security/totp")
    page = portal.get("/account/security/totp")
    html = page.get_data(as_text=True)
    assert "<svg" in html and 'aria-label="QR code for your authenticator app"' in html
    secret = SECRET_RE.search(html).group(1)
    shown = portal.submit("/account/security/totp", "/account/security/totp/confirm", code=code(secret, T0))
    assert shown.status_code == 200, text(shown)[:500]
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", text(shown))
    assert len(codes) == 10 and 'download="gatehouse-recovery-codes.txt"' in text(shown)
    html = shown.get_data(as_text=True)
    download = unescape(re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', html).group(1))
    assert all(c in unquote(download) for c in codes)
    return secret, codes


def test_totp_set_up_from_the_page_then_sign_in_through_the_second_step(app, portal, signed_in, clock):
    secret, codes = set_up_totp(portal)
    assert "On since March 4, 2026, 8:00:05\u202fAM UTC" in text(portal.get("/account/security"))
    redirected_to(portal.submit("/account", "/logout"), "/login")

    redirected_to(portal.login(signed_in), "/login/second-step")
    assert portal.session_id() is None  # no session before the second step
    clock.shift(30)
    wrong = portal.submit("/login/second-step", code="000000" if code(secret, T0 + timedelta(seconds=30)) != "000000"
                          else "111111")
    assert wrong.status_code == 400
    assert "wrong" in field_error(wrong, "code")
    redirected_to(portal.submit("/login/second-step", code=code(secret, T0 + timedelta(seconds=30))), "/account")
    assert portal.session_id() is not None

    # A recovery code works on the same page, once.
    redirected_to(portal.submit("/account", "/logout"), "/login")
    redirected_to(portal.login(signed_in), "/login/second-step")
    redirected_to(portal.submit("/login/second-step", code=codes[0]), "/account")
    assert "9 of 10 unused" in text(portal.get("/account/security"))


def test_a_wrong_confirmation_code_is_shown_next_to_the_field(portal, signed_in):
    portal.submit("/account/security", "/account/security/totp")
    refused = portal.submit("/account/security/totp", "/account/security/totp/confirm", code="12345")
    assert refused.status_code == 422
    assert field_error(refused, "code")


def test_changes_need_a_recent_sign_in_and_the_reauthentication_page_gives_one(portal, signed_in, clock):
    clock.shift(601)
    redirected_to(portal.submit("/account/security", "/account/security/totp"), "/account/reauthenticate")
    page = text(portal.get("/account/reauthenticate"))
    assert "Confirm it is you" in page and 'id="code"' not in page  # no second factor yet: password only
    refused = portal.submit("/account/reauthenticate", password="not the password at all")
    assert refused.status_code == 401 and field_error(refused, "password")
    redirected_to(portal.submit("/account/reauthenticate", password="correct horse battery staple"),
                  "/account/security")
    redirected_to(portal.submit("/account/security", "/account/security/totp"), "/account/security/totp")


def test_removing_the_authenticator_app_and_regenerating_codes(portal, signed_in):
    _, codes = set_up_totp(portal)
    shown = portal.submit("/account/security", "/account/security/recovery-codes")
    fresh = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", text(shown))
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    redirected_to(portal.submit("/account/security", "/account/security/totp/remove"), "/account/security")
    assert "Set up an authenticator app" in text(portal.get("/account/security"))
