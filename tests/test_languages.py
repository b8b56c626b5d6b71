"""Languages (CONTRACT §12): mails and portal pages in the reader's language, dates in their zone,
English where nothing else fits, and catalogues that translate every message the code can show."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
import time_machine
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from gatehouse import i18n
from tests.actions import PASSWORD
from tests.smtp import deliver, html_of, text_of
from tests.test_portal import CSRF_RE, Portal, text

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [language for language in i18n.LANGUAGES if language != i18n.DEFAULT]
# The marker functions of the code (Makefile's `messages` target extracts with the same ones).
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "N_": None}


pytestmark = pytest.mark.mail


@pytest.fixture
def portal(client):
    return Portal(client)


def spoken(response) -> str:
    """The language a page says it speaks, checked to be the same in the header and in <html lang>."""
    language = response.headers["Content-Language"]
    assert f'<html lang="{language}">' in response.get_data(as_text=True)
    assert "Accept-Language" in response.headers["Vary"]
    return language


def plain(value: str) -> str:
    return value.replace("\u202f", " ").replace("\xa0", " ")


# ---- mails --------------------------------------------------------------------------------------

def test_a_user_with_locale_de_gets_the_reset_mail_in_german(api, app, smtp_sink):
    api.register(email="anna@example.com", locale="de")
    assert api.post("/auth/forgot-password", json={"email": "anna@example.com"}).status_code == 202
    deliver(app)
    verification, mail = sorted(smtp_sink.to("anna@example.com"), key=lambda m: "Passwort" in m["Subject"])
    assert verification["Subject"] == "Bestätigen Sie Ihre E-Mail-Adresse für Gatehouse"
    assert mail["Subject"] == "Setzen Sie Ihr Gatehouse-Passwort zurück"
    assert mail["Content-Language"] == "de"
    body = text_of(mail)
    assert "Ihr Code zum Zurücksetzen des Passworts lautet:" in body
    assert "Der Code läuft in 10 Minuten ab und kann einmal verwendet werden." in body
    assert "Your password reset code" not in body
    html = html_of(mail)
    assert '<html lang="de">' in html and "<strong>10 Minuten</strong>" in html


@pytest.mark.parametrize("locale, subject", [("fr", "Réinitialisez votre mot de passe Gatehouse"),
                                             ("es-MX", "Restablece tu contraseña de Gatehouse"),
                                             ("en-GB", "Reset your Gatehouse password"),
                                             ("pt-BR", "Reset your Gatehouse password")])  # not shipped: English
def test_each_locale_gets_its_language_or_english(api, app, smtp_sink, locale, subject):
    api.register(email="reader@example.com", locale=locale)
    api.post("/auth/forgot-password", json={"email": "reader@example.com"})
    deliver(app)
    assert subject in [mail["Subject"] for mail in smtp_sink.to("reader@example.com")]


def test_a_mail_speaks_the_locale_the_recipient_had_when_it_was_queued(api, app, smtp_sink):
    token = api.register(email="moved@example.com", locale="de")["tokens"]["accessToken"]
    api.post("/auth/forgot-password", json={"email": "moved@example.com"})
    assert api.patch("/users/me", json={"locale": "fr"}, token=token).status_code == 200
    api.post("/auth/forgot-password", json={"email": "moved@example.com"})
    deliver(app)
    subjects = [mail["Subject"] for mail in smtp_sink.to("moved@example.com") if "Gatehouse" in mail["Subject"]]
    # Each mail as queued: the verification in German; the first reset code was superseded by the
    # second before delivery, so only the second, French, reset mail goes out.
    assert sorted(subjects) == ["Bestätigen Sie Ihre E-Mail-Adresse für Gatehouse",
                                "Réinitialisez votre mot de passe Gatehouse"]


def test_the_password_notice_dates_the_change_in_the_users_zone_and_language(api, app, smtp_sink):
    at = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    with time_machine.travel(at, tick=False):
        token = api.register(email="zone@example.com", locale="fr", timezone="Europe/Paris")["tokens"]["accessToken"]
        change = {"currentPassword": PASSWORD, "newPassword": "an entirely new passphrase"}
        assert api.post("/users/me/password", json=change, token=token).status_code == 200
    deliver(app, now=at)
    (mail,) = smtp_sink.to("zone@example.com", "mot de passe Gatehouse a été modifié")
    assert "modifié le 1 juillet 2026, 14:00:00 +0200." in plain(text_of(mail))  # 12:00 UTC is 14:00 in Paris
    assert "<strong>1 juillet 2026, 14:00:00 +0200</strong>" in plain(html_of(mail))


# ---- portal -------------------------------------------------------------------------------------

def test_a_user_with_locale_de_gets_the_portal_in_german(api, portal, client):
    api.register(email="portal-de@example.com", locale="de")
    response = portal.login("portal-de@example.com")
    assert response.status_code == 302
    page = client.get("/account", headers={"Accept-Language": "fr"})  # the account's locale wins
    assert spoken(page) == "de"
    body = text(page)
    assert "Profil speichern" in body and "Zeitzone" in body and "Save profile" not in body
    assert '<option lang="de" selected value="de">Deutsch</option>' in page.get_data(as_text=True)  # its field
    security = client.get("/account/security")
    assert spoken(security) == "de" and "Passwort ändern" in text(security)


@pytest.mark.parametrize("accept, expected, phrase", [
    ("fr", "fr", "Se connecter"),
    ("fr-CA,fr;q=0.9,en;q=0.8", "fr", "Mot de passe oublié ?"),
    ("es;q=0.5, de;q=0.9", "de", "Passwort vergessen?"),
    ("pt-BR, ja;q=0.9", "en", "Forgot your password?"),
    ("", "en", "Sign in"),
])
def test_signed_out_pages_speak_the_best_accepted_language(client, accept, expected, phrase):
    headers = {"Accept-Language": accept} if accept else {}
    page = client.get("/login", headers=headers)
    assert page.status_code == 200
    assert spoken(page) == expected
    assert phrase in text(page)


def test_the_language_chooser_sets_a_cookie_that_signed_out_pages_follow(client):
    shown = client.get("/register", headers={"Accept-Language": "de"})
    token = CSRF_RE.search(shown.get_data(as_text=True)).group(1)
    assert 'name="language"' in shown.get_data(as_text=True)
    chosen = client.post("/language", data={"csrf_token": token, "language": "es", "next": "/register"})
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/register"
    cookie = chosen.headers["Set-Cookie"]
    assert cookie.startswith(f"{i18n.COOKIE}=es;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/register", headers={"Accept-Language": "de"})
    assert spoken(page) == "es" and "Crear una cuenta" in text(page)

    for language, where in (("xx", "//elsewhere.example/"), ("fr", "https://elsewhere.example/")):
        answer = client.post("/language", data={"csrf_token": token, "language": language, "next": where})
        assert answer.headers["Location"] == "/login"  # never off-site
    assert spoken(client.get("/login")) == "fr"


def test_the_chooser_needs_the_forms_csrf_token(client):
    assert client.post("/language", data={"language": "de"}).status_code == 400


def test_the_chooser_is_on_signed_out_pages_only(api, portal, client):
    assert 'action="/language"' in client.get("/login").get_data(as_text=True)
    api.register(email="chooser@example.com")
    portal.login("chooser@example.com")
    assert 'action="/language"' not in client.get("/account").get_data(as_text=True)


def test_portal_dates_are_in_the_users_zone_and_language(api, portal, client):
    at = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
    with time_machine.travel(at, tick=False):
        api.register(email="dates@example.com", locale="es", timezone="America/New_York")
        portal.login("dates@example.com")
        body = plain(text(client.get("/account/security")))
    assert "Sesión iniciada el 15 de enero de 2026, 7:00:00 -0500" in body  # 12:00 UTC is 7:00 in New York


def test_a_missing_translation_falls_back_to_english(app, client, tmp_path):
    """A catalogue that lacks one message: that message in English, the rest of the page translated."""
    shutil.copytree(ROOT / "translations", tmp_path / "translations", ignore=shutil.ignore_patterns("*.mo"))
    for language in SHIPPED:
        path = tmp_path / "translations" / language / "LC_MESSAGES"
        with open(path / "messages.po", "rb") as source:
            catalog = read_po(source)
        if language == "de":
            catalog.delete("Forgot your password?")
        with open(path / "messages.mo", "wb") as target:
            write_mo(target, catalog)
    from gatehouse.extensions import babel

    app.extensions["babel"].translation_directories = [str(tmp_path / "translations")]
    loaded = babel.domain_instance.cache  # catalogues once loaded are kept for the whole process
    loaded.clear()
    try:
        body = text(client.get("/login", headers={"Accept-Language": "de"}))
    finally:
        loaded.clear()
    assert "Forgot your password?" in body  # the missing one, in English
    assert "Anmelden" in body and "Neu hier?" in body  # the others, in German


def test_problem_codes_do_not_change_with_the_language(api, client):
    response = client.post("/auth/login", json={"email": "nobody@example.com", "password": "wrong password here"},
                           headers={"Accept-Language": "de"})
    assert response.status_code == 401 and response.get_json()["code"] == "invalid_credentials"


# ---- catalogues ---------------------------------------------------------------------------------

def message_ids() -> dict[str, str]:
    """Every message id of the code and templates, as `make messages` extracts them, with where it is."""
    with open(ROOT / "babel.cfg") as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    found = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True):
        if any(part in filename for part in (".venv", "tests/")):
            continue
        found.setdefault(message if isinstance(message, str) else tuple(message), f"{filename}:{lineno}")
    return found


@pytest.mark.parametrize("language", SHIPPED)
def test_the_catalogue_translates_every_message_of_the_code_and_templates(language):
    with open(ROOT / "translations" / language / "LC_MESSAGES" / "messages.po", "rb") as source:
        catalog = read_po(source)
    ids = message_ids()
    assert len(ids) > 150  # the extraction itself works
    missing = []
    for message_id, where in ids.items():
        entry = catalog.get(message_id)
        strings = entry.string if entry is not None else None
        strings = strings if isinstance(strings, tuple) else (strings,)
        if entry is None or entry.fuzzy or not all(strings):
            missing.append(f"{where}: {message_id!r}")
    assert not missing, f"untranslated in {language}:\n" + "\n".join(missing)
    problems = [(message.id, errors) for message, errors in catalog.check() if errors]  # placeholders match
    assert not problems, problems
    stale = [message.id for message in catalog if message.id and message.id not in ids]
    assert not stale, f"no longer used, remove from {language}: {stale}"


def test_error_pages_speak_the_accepted_language_too(client):
    page = client.get("/no/such/page", headers={"Accept": "text/html", "Accept-Language": "de"})
    assert page.status_code == 404
    assert spoken(page) == "de" and "Nicht gefunden" in text(page)
    api_answer = client.get("/no/such/page", headers={"Accept-Language": "de"})
    assert api_answer.get_json()["code"] == "not_found" and "Content-Language" not in api_answer.headers
