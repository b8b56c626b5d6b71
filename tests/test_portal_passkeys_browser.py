"""Passkeys and TOTP in a real browser: headless Chromium with its virtual authenticator (the DevTools
WebAuthn domain, through Playwright's CDP session), against gunicorn serving the portal at localhost."""
from __future__ import annotations

import time

import pyotp
import pytest

from tests.actions import PASSWORD
from tests.smtp import mail_settings
from tests.test_portal_browser import fits_the_phone, phone_tab, pytestmark, register  # noqa: F401 (its marks)


@pytest.fixture
def server(serve, smtp_sink):
    # Browsers take no IP address as a relying-party id: the portal is reached at localhost.
    return serve(public_host="localhost", **mail_settings(smtp_sink, OUTBOX_INLINE="1")).url


@pytest.fixture
def page(server):
    """The phone tab with a virtual platform authenticator: resident keys, user verification, presence."""
    with phone_tab(server) as tab:
        cdp = tab.context.new_cdp_session(tab)
        cdp.send("WebAuthn.enable")
        tab.authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
            "isUserVerified": True, "automaticPresenceSimulation": True}})["authenticatorId"]
        tab.cdp = cdp
        yield tab


def sign_in_with_password(page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email or username").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url("**/login")


def test_add_a_passkey_then_sign_in_with_it(page, smtp_sink, tmp_path):
    register(page, smtp_sink, "passkey@example.com")
    page.goto("/account/security")
    page.get_by_label("Passkey name").fill("Virtual key")
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_url("**/account/security")
    assert "The passkey was added." in page.get_by_role("status").inner_text()
    assert page.locator("p.item-title", has_text="Virtual key").is_visible()
    credentials = page.cdp.send("WebAuthn.getCredentials", {"authenticatorId": page.authenticator})["credentials"]
    assert len(credentials) == 1 and credentials[0]["isResidentCredential"]
    fits_the_phone(page)
    page.screenshot(path=tmp_path / "security-passkey.png", full_page=True)

    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("**/account")
    assert page.get_by_role("heading", name="Profile").is_visible()
    assert page.refused == []


def test_set_up_totp_from_the_page_and_sign_in_through_the_second_step(page, smtp_sink, tmp_path):
    register(page, smtp_sink, "totp@example.com")
    page.goto("/account/security")
    page.get_by_role("button", name="Set up an authenticator app").click()
    page.wait_for_url("**/account/security/totp")
    assert page.get_by_role("img", name="QR code for your authenticator app").is_visible()
    fits_the_phone(page)
    page.screenshot(path=tmp_path / "totp-setup.png", full_page=True)
    totp = pyotp.TOTP(page.locator("#totp-secret").inner_text())
    used_step = int(time.time()) // 30
    page.get_by_label("6-digit code from the app").fill(totp.at(used_step * 30))
    page.get_by_role("button", name="Turn on").click()
    assert page.get_by_role("heading", name="Your recovery codes").is_visible()
    assert page.locator("ul.codes li").count() == 10
    fits_the_phone(page)

    page.goto("/account/security")
    sign_out(page)
    sign_in_with_password(page, "totp@example.com")
    page.wait_for_url("**/login/second-step")
    fits_the_phone(page)
    # The step used to turn TOTP on is spent; the next one is within the step of skew allowed.
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(totp.at((used_step + 1) * 30))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/account")
    assert page.refused == []
