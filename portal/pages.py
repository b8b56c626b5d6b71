"""What every portal page shares: rendering a form, its refusal in words, and POST handler registration."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from flask import render_template
from flask_babel import get_locale, get_timezone, gettext
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from pydantic.alias_generators import to_snake

from gatehouse import i18n
from gatehouse.errors import BadRequest, GatehouseError
from gatehouse.i18n import N_
from gatehouse.limits import auth_limited
from portal import bp


# The forms of the `auth` bucket's use cases (gatehouse.limits): they share it with the API's endpoints.
AUTH_FORMS = frozenset({"/login", "/register", "/forgot-password", "/reset-password", "/not-me",
                        "/account/email/revert"})
SIGN_IN_FORMS = frozenset({"/login"})


def form_post(rule: str) -> Callable:
    """Register a form's POST handler; the forms in AUTH_FORMS share the API's `auth` bucket."""

    def register(view: Callable) -> Callable:
        handler = auth_limited(view, sign_in=rule in SIGN_IN_FORMS) if rule in AUTH_FORMS else view
        bp.add_url_rule(rule, view.__name__, handler, methods=["POST"])
        return view

    return register


def page(template: str, status: int = 200, **context):
    return render_template(f"portal/{template}", **context), status


def field_name(path: str) -> str:
    """A contract field path as a form field's name: "displayName" -> display_name,
    "preferences.focus.defaultMinutes" -> focus_default_minutes."""
    parts = path.split(".")
    if parts[0] == "preferences":
        parts = parts[1:]
    return "_".join(to_snake(part) for part in parts)


def sentence(label: str, message: str) -> str:
    """A field's message as a sentence in the page's language: "Avatar URL must be an https URL."."""
    said = translated(message)
    if message.startswith(("is ", "must ")):  # a predicate of the field, in every shipped language
        return f"{label} {said}."
    return f"{label}: {said[:1].upper()}{said[1:]}"


def translated(text: str) -> str:
    """A service's message in the page's language when the catalogues have it, else as given
    (gettext("") would be the catalogue's header)."""
    return gettext(text) if text else text


def said(err: GatehouseError) -> str:
    """A refusal's detail in the page's language. A detail no catalogue can have (one that carries a
    library's reason in English) reads as its kind's own detail on a page in another language."""
    text = translated(err.detail)
    if text == err.detail and str(get_locale()) != i18n.DEFAULT and err.detail != type(err).detail:
        return translated(type(err).detail)
    return text


def refuse(form: FlaskForm, err: GatehouseError) -> None:
    """Put a service's refusal on the form: each field error next to its field, the rest in the summary.

    A form's `aliases` maps contract field names to its own; `code_fields` names the field that an
    error without field details (e.g. invalid_code) is about.
    """
    aliases = getattr(form, "aliases", {})
    unplaced = []
    for error in err.errors:
        name = aliases.get(error["field"], field_name(error["field"]))
        field = form._fields.get(name)
        if field is None or name == "csrf_token":
            unplaced.append(sentence(error["field"], error["message"]))
        else:
            field.errors = [*field.errors, sentence(field.label.text, error["message"])]
    if not err.errors and err.code in getattr(form, "code_fields", {}):
        field = form[form.code_fields[err.code]]
        field.errors = [*field.errors, said(err)]
    elif unplaced or not err.errors:
        form.alert = " ".join([said(err), *unplaced]) if err.errors else said(err)


def entered(field) -> str:
    """What was typed into a text field, without surrounding blanks (never used on passwords)."""
    return (field.data or "").strip()


def given(**values: str | None) -> dict:
    """Form values as a params body: a field left empty is left out, so that it reads "is required"."""
    return {name: value for name, value in values.items() if value}


def status_of(err: GatehouseError) -> tuple[int, dict]:
    """The service's status for the page that shows a refusal, with Retry-After when it has one."""
    return err.status, {"Retry-After": str(err.retry_after)} if err.retry_after else {}


def refused(template: str, form: FlaskForm, err: GatehouseError, **context):
    """The form's page again, with the refusal in words."""
    refuse(form, err)
    status, headers = status_of(err)
    body, status = page(template, status, form=form, **context)
    return body, status, headers


def when(moment: datetime | None) -> str:
    """A moment in the page's language and the signed-in user's time zone."""
    if moment is None:
        return gettext("never")
    return i18n.moment(moment, str(get_locale()), str(get_timezone()))


@bp.context_processor
def formatting() -> dict:
    return {"when": when}


@bp.errorhandler(CSRFError)
def csrf_refused(_: CSRFError):
    error = BadRequest(N_("This form has expired or did not come from this site. Go back, reload the page "
                          "and send it again."))
    return render_template("errors/error.html", error=error), 400
