"""What every portal page shares: rendering a form, its refusal in words, and POST handler registration."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from flask import render_template
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from pydantic.alias_generators import to_snake

from api.limits import limited
from gatehouse.errors import BadRequest, GatehouseError
from portal import bp


def form_post(rule: str) -> Callable:
    """Register a form's POST handler; the sign-in forms listed in api.limits share the API's `auth` bucket."""

    def register(view: Callable) -> Callable:
        bp.add_url_rule(rule, view.__name__, limited(rule, view), methods=["POST"])
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
    if message.startswith(("is ", "must ")):
        return f"{label} {message}."
    return f"{label}: {message[:1].upper()}{message[1:]}"


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
        field.errors = [*field.errors, err.detail]
    elif unplaced or not err.errors:
        form.alert = " ".join([err.detail, *unplaced]) if err.errors else err.detail


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
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


@bp.context_processor
def formatting() -> dict:
    return {"when": when}


@bp.errorhandler(CSRFError)
def csrf_refused(_: CSRFError):
    error = BadRequest("This form has expired or did not come from this site. Go back, reload the page "
                       "and send it again.")
    return render_template("errors/error.html", error=error), 400
