"""The portal's language: the locale and time-zone selectors, and the chooser of signed-out pages."""
from __future__ import annotations

from flask import current_app, g, redirect, request, url_for

from gatehouse import i18n
from portal import bp
from portal.pages import form_post

YEAR = 365 * 24 * 3600


def page_language() -> str:
    """The signed-in user's locale; signed out, the chosen language, else Accept-Language; else English."""
    caller = g.get("caller")
    if caller is not None:
        return i18n.language_of(caller.snapshot.user.locale)
    chosen = i18n.supported(request.cookies.get(i18n.COOKIE))
    return chosen or request.accept_languages.best_match(i18n.LANGUAGES) or i18n.DEFAULT


def page_timezone() -> str:
    caller = g.get("caller")
    return caller.snapshot.user.timezone if caller is not None else "UTC"


@bp.record_once
def _select(state) -> None:
    languages = state.app.extensions["babel"]
    languages.locale_selector, languages.timezone_selector = page_language, page_timezone


@bp.context_processor
def languages() -> dict:
    return {"languages": i18n.NAMES}


def back_to(path: str | None) -> str:
    """The page the chooser was on: a path of this site only (never "//elsewhere" or a URL)."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\")):
        return path
    return url_for("portal.login")


@form_post("/language")
def choose_language():
    """The chooser's form: remember the language in a cookie, back to the page it was on."""
    language = i18n.supported(request.form.get("language")) or i18n.DEFAULT
    response = redirect(back_to(request.form.get("next")))
    response.set_cookie(i18n.COOKIE, language, max_age=YEAR, httponly=True, samesite="Lax",
                        secure=current_app.config["SESSION_COOKIE_SECURE"])
    return response
