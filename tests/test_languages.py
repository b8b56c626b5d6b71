"""Languages (CONTRACT §12): mails and portal pages in the reader's language, dates in their zone,
English where nothing else fits, and catalogues that translate every message the code can show."""
from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest
import time_machine
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from gatehouse import i18n
from tests.actions import PASSWORD
from tests.authenticator import Authenticator
from tests.mfa import code, enrol_totp
from tests.smtp import deliver, html_of, text_of
from tests.test_passkeys import register as register_passkey
from tests.test_portal import CSRF_RE, Portal, field_error, mark_verified, redirected_to, text
from tests.test_portal_mfa import SECRET_RE

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [language for language in i18n.LANGUAGES if language != i18n.DEFAULT]
# The marker functions of the code (Makefile's `messages` target extracts with the same ones).
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "N_": None}
# Where the `clock` fixture (tests/conftest.py) stands time still for the two-step tests.
T0 = datetime(2026, 3, 4, 8, 0, 5, tzinfo=timezone.utc)


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


# ---- two-step verification: its pages and its mails -------------------------------------------

def choose(portal, language: str) -> None:
    """The language chosen on a signed-out page, as a visitor does it (the chooser's cookie)."""
    assert portal.submit("/login", "/language", language=language, next="/login").status_code == 302


def with_totp(api, app, email: str, **fields) -> tuple[str, str, list[str]]:
    """An account (address confirmed) with TOTP on since T0: (access token, TOTP secret, recovery codes)."""
    token = api.register(email=email, **fields)["tokens"]["accessToken"]
    mark_verified(app, email)
    secret, codes = enrol_totp(api, token, T0)
    return token, secret, codes


def test_a_german_account_gets_the_second_step_and_the_factor_mails_in_german(api, app, portal, client, smtp_sink,
                                                                               clock):
    _, _, codes = with_totp(api, app, "zwei@example.com", locale="de", timezone="Europe/Berlin")
    choose(portal, "de")
    redirected_to(portal.login("zwei@example.com"), "/login/second-step")
    page = client.get("/login/second-step")
    assert spoken(page) == "de"
    body = text(page)
    assert "<h1>Zwei-Schritt-Verifizierung</h1>" in body and ">Weiter</button>" in body
    assert "Code aus Ihrer Authenticator-App oder ein Wiederherstellungscode" in body  # the field's label
    assert "Telefon verloren? Geben Sie stattdessen einen Ihrer Wiederherstellungscodes ein." in body
    assert "Von vorn beginnen" in body and "Two-step verification" not in body and "Continue" not in body

    wrong = portal.submit("/login/second-step", code="zzzzz-zzzzz")
    assert wrong.status_code == 400
    assert field_error(wrong, "code") == ("Code aus Ihrer Authenticator-App oder ein Wiederherstellungscode "
                                          "ist falsch, bereits verwendet oder abgelaufen.")
    redirected_to(portal.submit("/login/second-step", code=codes[0]), "/account")

    deliver(app)
    when = plain(i18n.moment(T0, "de", "Europe/Berlin"))
    (used,) = smtp_sink.to("zwei@example.com", "Wiederherstellungscode")
    assert used["Subject"] == "Ein Gatehouse-Wiederherstellungscode wurde verwendet"
    assert used["Content-Language"] == "de"
    body = plain(text_of(used))
    assert body.splitlines()[0] == "Gatehouse: Ein Wiederherstellungscode wurde verwendet"
    assert f"Am {when} wurde einer Ihrer Wiederherstellungscodes verwendet" in body
    assert "Er gilt nicht mehr; es sind noch 9 unbenutzte Codes übrig." in body
    assert "Alle anderen angemeldeten Geräte wurden abgemeldet." in body
    assert "recovery code" not in body and "unused" not in body
    html = plain(html_of(used))
    assert '<html lang="de">' in html and f"Am <strong>{when}</strong> wurde" in html
    assert "es sind noch <strong>9</strong> unbenutzte Codes übrig" in html

    (added,) = smtp_sink.to("zwei@example.com", "Zwei-Schritt-Verifizierung")  # TOTP turned on at T0
    assert added["Subject"] == "Die Zwei-Schritt-Verifizierung Ihres Gatehouse-Kontos wurde geändert"
    assert (f"Am {when} wurde der Zwei-Schritt-Verifizierung Ihres Gatehouse-Kontos eine Authenticator-App (TOTP) "
            "hinzugefügt.") in plain(text_of(added))
    assert "zurück und prüfen Sie die Sicherheitsseite Ihres Kontos." in text_of(added)
    assert f"Am <strong>{when}</strong> wurde der Zwei-Schritt-Verifizierung" in plain(html_of(added))


def test_a_french_accounts_security_page_speaks_french_about_its_factors(api, app, portal, client, clock):
    token, secret, _ = with_totp(api, app, "deux@example.com", locale="fr", timezone="Europe/Paris")
    assert register_passkey(api, token, Authenticator(), name="Portable").status_code == 201
    redirected_to(portal.login("deux@example.com"), "/login/second-step")
    clock.shift(30)
    redirected_to(portal.submit("/login/second-step", code=code(secret, T0 + timedelta(seconds=30))), "/account")

    page = client.get("/account/security")
    assert spoken(page) == "fr"
    body = plain(text(page))
    when = plain(i18n.moment(T0, "fr", "Europe/Paris"))
    for phrase in ('<h2 id="mfa-heading">Validation en deux étapes</h2>', "<h3>Application d’authentification</h3>",
                   f"Activée depuis le {when}.", "Retirer l’application d’authentification",
                   "<h3>Codes de récupération</h3>", "10 codes inutilisés sur 10.",
                   "Créer de nouveaux codes de récupération", "<h3>Clés d’accès</h3>",
                   f"Ajoutée le {when} · jamais utilisée", "Nom de la clé d’accès",
                   "Pour distinguer vos clés d’accès.", 'placeholder="p. ex. Ordinateur du bureau"',
                   ">Ajouter une clé d’accès</button>",
                   "L’ajout d’une clé d’accès nécessite JavaScript.",
                   'data-not-used="La clé d’accès n’a pas été utilisée. Vous pouvez réessayer."'):
        assert phrase in body, phrase
    for english in ("Two-step verification", "Authenticator app", "Passkeys", "unused", "never used", "e.g. Work"):
        assert english not in body, english

    removed = portal.submit("/account/security", "/account/security/totp/remove")
    redirected_to(removed, "/account/security")
    assert "L’application d’authentification a été retirée." in text(client.get("/account/security"))


def test_turning_on_totp_in_the_portal_speaks_spanish_from_reauthentication_to_the_codes(api, app, portal, client,
                                                                                         clock):
    api.register(email="pasos@example.com", locale="es")
    mark_verified(app, "pasos@example.com")
    redirected_to(portal.login("pasos@example.com"), "/account")
    clock.shift(601)  # the sign-in is no longer recent
    redirected_to(portal.submit("/account/security", "/account/security/totp"), "/account/reauthenticate")
    page = client.get("/account/reauthenticate")
    assert spoken(page) == "es"
    body = text(page)
    assert "Por tu seguridad, confirma que eres tú antes de este cambio." in body  # the flash
    assert "<h1>Confirma que eres tú</h1>" in body
    assert "Para cambiar cómo inicias sesión, necesitas haber iniciado sesión hace poco. Introduce tu contraseña." \
        in body
    redirected_to(portal.submit("/account/reauthenticate", password=PASSWORD), "/account/security")
    assert "Gracias. Ya puedes hacer tu cambio." in text(client.get("/account/security"))

    redirected_to(portal.submit("/account/security", "/account/security/totp"), "/account/security/totp")
    setup = client.get("/account/security/totp")
    html = text(setup)
    assert spoken(setup) == "es" and "<h1>Configurar una aplicación de autenticación</h1>" in html
    assert 'aria-label="Código QR para tu aplicación de autenticación"' in html
    assert "¿No puedes escanearlo? Introduce esta clave en la aplicación:" in html
    assert "Código de 6 dígitos de la aplicación" in html and ">Activar</button>" in html
    assert ">Cancelar</a>" in html and "Scan this QR code" not in html
    secret = SECRET_RE.search(setup.get_data(as_text=True)).group(1)

    shown = portal.submit("/account/security/totp", "/account/security/totp/confirm",
                          code=code(secret, T0 + timedelta(seconds=601)))
    assert shown.status_code == 200
    html = text(shown)
    assert "La verificación en dos pasos con la aplicación de autenticación está activada." in html
    assert "<h1>Tus códigos de recuperación</h1>" in html
    assert "Guárdalos en un lugar seguro: <strong>esta es la única vez que se muestran.</strong>" in html
    assert ">Descargar como .txt</a>" in html and ">Ya los he guardado</a>" in html
    download = unquote(re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', html).group(1))
    assert download.startswith("Códigos de recuperación de Gatehouse\n\n")
    assert download.endswith("\n\nCada código funciona una sola vez.\n")


def test_passkey_mails_name_the_passkey_in_the_recipients_language_and_escape_it_in_html(api, app, smtp_sink,
                                                                                         clock):
    token = api.register(email="llave@example.com", locale="es")["tokens"]["accessToken"]
    passkey = register_passkey(api, token, Authenticator(), name="Llave <b>").get_json()["passkey"]
    assert api.delete(f"/users/me/passkeys/{passkey['id']}", token=token).status_code == 204
    deliver(app)
    mails = smtp_sink.to("llave@example.com", "La verificación en dos pasos de tu cuenta de Gatehouse ha cambiado")
    bodies = sorted(plain(text_of(mail)) for mail in mails)
    assert len(bodies) == 2
    assert all(body.splitlines()[0] == "Gatehouse: la verificación en dos pasos ha cambiado" for body in bodies)
    assert "se añadió una llave de acceso llamada «Llave <b>» a la verificación en dos pasos" in bodies[0]
    assert "se quitó la llave de acceso llamada «Llave <b>» de la verificación en dos pasos" in bodies[1]
    assert all("«Contraseña olvidada»" in body for body in bodies)
    for mail in mails:
        html = html_of(mail)
        assert "«Llave &lt;b&gt;»" in html and "<b>" not in html


def test_the_mfa_reset_mail_speaks_french(api, app, runner, smtp_sink, clock):
    user = api.register(email="remise@example.com", locale="fr", timezone="Europe/Paris")
    enrol_totp(api, user["tokens"]["accessToken"], T0)
    assert runner.invoke(args=["users", "create-admin", "chef@example.com", "--password", PASSWORD]).exit_code == 0
    admin = api.login(email="chef@example.com")["tokens"]["accessToken"]
    assert api.delete(f"/admin/users/{user['user']['id']}/mfa", token=admin).status_code == 204
    deliver(app)
    (mail,) = smtp_sink.to("remise@example.com", "réinitialisée")
    assert mail["Subject"] == "La validation en deux étapes de votre compte Gatehouse a été réinitialisée"
    when = plain(i18n.moment(T0, "fr", "Europe/Paris"))
    body = plain(text_of(mail))
    assert f"Le {when}, un administrateur a supprimé tous les seconds facteurs" in body
    assert "contactez votre administrateur." in body and "administrator" not in body
    assert f"<h1 style=\"margin:0 0 8px;font-size:20px\">La validation en deux étapes a été réinitialisée</h1>" \
        in html_of(mail)


def test_a_factor_mail_queued_before_it_named_its_factor_still_renders_in_the_language(app):
    """Rows queued by an earlier release: `at` as "YYYY-MM-DD HH:MM UTC" and no `kind`."""
    from gatehouse.outbox.render import render

    context = {"at": "2026-03-03 10:00 UTC", "change": "added to", "factor": "an authenticator app (TOTP)",
               "_language": "de", "_timezone": "Europe/Berlin"}
    with app.app_context():
        message = render("row-1", "factor-changed", "alt@example.com", context)
    assert message.subject == "Die Zwei-Schritt-Verifizierung Ihres Gatehouse-Kontos wurde geändert"
    assert "Am 2026-03-03 10:00 UTC wurde die Zwei-Schritt-Verifizierung Ihres Gatehouse-Kontos geändert." \
        in message.body
    assert "Am <strong>2026-03-03 10:00 UTC</strong> wurde" in message.html


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_subject_arrives_as_written_in_every_language(app, language):
    """A long subject with accents is folded without cutting a word ("wurde ge ändert")."""
    from email import message_from_bytes, policy

    from flask_babel import force_locale, gettext

    from gatehouse.outbox.render import PRODUCT, SUBJECTS, render

    context = {"at": "2026-03-03T10:00:00.000Z", "left": 3, "code": "123456", "ttl_seconds": 600,
               "changed_at": "2026-03-03T10:00:00.000Z", "_language": language}
    with app.app_context():
        for template, subject in SUBJECTS.items():
            with force_locale(language):
                expected = gettext(subject, product=PRODUCT)
            sent = message_from_bytes(render("row-1", template, "s@example.com", context).as_bytes(),
                                      policy=policy.default)
            assert sent["Subject"] == expected, template


@pytest.mark.parametrize("language, button, not_used", [
    ("de", "Mit einem Passkey anmelden", "Der Passkey wurde nicht verwendet. Sie können es erneut versuchen."),
    ("es", "Iniciar sesión con una llave de acceso", "No se ha usado la llave de acceso. Puedes volver a intentarlo."),
    ("en", "Sign in with a passkey", "The passkey was not used. You can try again."),
])
def test_the_passkey_button_and_its_script_messages_speak_the_pages_language(client, language, button, not_used):
    page = client.get("/login", headers={"Accept-Language": language})
    assert spoken(page) == language
    body = text(page)
    assert f"data-passkey-button hidden>{button}</button>" in body and f'data-not-used="{not_used}"' in body


def test_a_refused_passkey_sign_in_says_why_in_the_pages_language(api, portal, clock):
    token = api.register(email="sans@example.com")["tokens"]["accessToken"]
    authenticator = Authenticator()
    passkey = register_passkey(api, token, authenticator).get_json()["passkey"]
    assert api.delete(f"/users/me/passkeys/{passkey['id']}", token=token).status_code == 204
    choose(portal, "de")
    started = api.post("/auth/passkey/options").get_json()
    refused = portal.submit("/login", "/login/passkey", challenge_id=started["challengeId"],
                            credential=json.dumps(authenticator.get(started["options"])))
    assert refused.status_code == 400 and spoken(refused) == "de"
    assert "Der Passkey hat Sie nicht angemeldet: Dieser Passkey ist bei diesem Konto nicht registriert." \
        in text(refused)


@pytest.mark.parametrize("locale, said", [
    ("de", "Die Antwort des Passkeys konnte nicht geprüft werden."),  # the library's English reason left out
    ("en", "The passkey response could not be verified: "),  # in English, with the library's reason
])
def test_a_refusal_that_carries_a_librarys_reason_reads_in_the_pages_language(api, app, portal, clock, locale, said):
    token = api.register(email="fremd@example.com", locale=locale)["tokens"]["accessToken"]
    mark_verified(app, "fremd@example.com")
    redirected_to(portal.login("fremd@example.com"), "/account")
    options = api.post("/users/me/passkeys/options", token=token).get_json()["options"]
    credential = Authenticator().create(options, origin="https://elsewhere.example")
    refused = portal.submit("/account/security", "/account/security/passkeys", name="Fremd",
                            credential=json.dumps(credential))
    assert refused.status_code == 400 and spoken(refused) == locale
    assert field_error(refused, "name").startswith(said)


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
