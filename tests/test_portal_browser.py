"""The portal in a real browser: headless Chromium (Debian's) driven over its DevTools protocol by
Playwright, against gunicorn serving the app as in production. Screenshots go to the test's temp dir."""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.actions import PASSWORD
from tests.smtp import code_in, mail_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent
PHONE = {"width": 375, "height": 812}
VERIFY = "Confirm your email address"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)"),
    # One leg is enough here: the pages are the same on both, and the client-side tests cover both.
    pytest.mark.parametrize("leg", ["sqlite"], indirect=True),
]


@pytest.fixture
def server(serve, smtp_sink):
    """gunicorn on a free loopback port, mail delivered inline to the SMTP sink; its base URL."""
    return serve(**mail_settings(smtp_sink, OUTBOX_INLINE="1")).url


@contextmanager
def phone_tab(base_url: str):
    """A tab of headless Chromium at 375 px on `base_url`; its `refused` lists what the CSP blocked."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=PHONE, base_url=base_url)
        tab = context.new_page()
        tab.refused = []  # what the Content-Security-Policy blocked, as Chromium reports it on the console

        def console(message) -> None:
            if "Content Security Policy" in message.text:
                tab.refused.append(message.text)

        tab.on("console", console)
        try:
            yield tab
        finally:
            browser.close()


@pytest.fixture
def page(server):
    with phone_tab(server) as tab:
        yield tab


def fits_the_phone(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} scrolls sideways: {width} px wide"


def register(page, smtp_sink, email: str) -> None:
    page.goto("/register")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/verify-email")
    deadline = time.monotonic() + 10
    while not smtp_sink.to(email, VERIFY) and time.monotonic() < deadline:
        time.sleep(0.05)
    page.get_by_label("Code from the email").fill(code_in(smtp_sink.to(email, VERIFY)[-1]))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/account")


def test_registration_lands_on_the_code_page_and_then_the_account(page, smtp_sink, tmp_path):
    page.goto("/register")
    page.get_by_label("Email address").fill("browser@example.com")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    assert page.get_by_role("alert").is_visible()
    assert "at least 12 characters" in page.locator("#password-error").inner_text()

    register(page, smtp_sink, "browser@example.com")
    assert page.get_by_role("heading", name="Profile").is_visible()
    assert "Your email address is verified." in page.get_by_role("status").inner_text()
    page.screenshot(path=tmp_path / "account.png", full_page=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.get_by_label("Email or username").fill("browser@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/account")
    cookie = next(c for c in page.context.cookies() if c["name"] == "session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.refused == []


def test_every_page_fits_a_375_px_phone(page, smtp_sink, tmp_path):
    for path in ("/register", "/forgot-password", "/reset-password", "/login"):
        page.goto(path)
        fits_the_phone(page)
    page.screenshot(path=tmp_path / "login.png", full_page=True)
    page.get_by_role("button", name="Sign in", exact=True).click()  # an empty form: errors in words, still no sideways scroll
    assert page.get_by_role("alert").is_visible()
    fits_the_phone(page)
    page.screenshot(path=tmp_path / "login-refused.png", full_page=True)

    register(page, smtp_sink, "phone-with-a-rather-long-address@example.com")
    for path in ("/account", "/account/preferences", "/account/security"):
        page.goto(path)
        fits_the_phone(page)
    page.screenshot(path=tmp_path / "security.png", full_page=True)
    assert page.refused == []


def test_the_activity_page_after_sign_ins_from_two_user_agents(page, server, smtp_sink):
    """Chromium's own sign-in and an app's (another user agent) both read in words; the app's session
    is signed out from its row."""
    import requests

    register(page, smtp_sink, "tim@example.com")
    app_agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) " \
                "Version/17.0 Mobile/15E148 Safari/604.1"
    signed = requests.post(f"{server}/auth/login", json={"email": "tim@example.com", "password": PASSWORD},
                           headers={"User-Agent": app_agent}, timeout=10)
    assert signed.status_code == 200
    page.get_by_role("link", name="Activity").click()
    page.wait_for_url("**/account/activity")
    rows = page.locator(".timeline li")
    assert "Signed in from Mobile Safari on iOS · 127.0.0.1 ·" in rows.nth(0).inner_text()
    shown = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert any(row.startswith("Signed in from HeadlessChrome on Linux · 127.0.0.1 ·") for row in shown), shown
    fits_the_phone(page)
    assert page.refused == []
    rows.nth(0).get_by_role("button", name="Sign out this session").click()
    page.wait_for_url("**/account/activity")
    assert page.get_by_role("status").inner_text() == "The session was signed out."
    refused = requests.get(f"{server}/users/me", timeout=10,
                           headers={"Authorization": f"Bearer {signed.json()['tokens']['accessToken']}"})
    assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
