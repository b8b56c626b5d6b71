"""The portal's forms: fields, labels and autocomplete hints only. Every rule is checked by the
params objects and services they feed (gatehouse.params, gatehouse.services), never here."""
from __future__ import annotations

from flask import g
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (BooleanField, EmailField, HiddenField, IntegerField, PasswordField, SelectChoice, SelectField,
                     StringField)

from gatehouse.i18n import NAMES
from gatehouse.regions import REGIONS
from gatehouse.vocabulary import DIGESTS


def _text(label, autocomplete: str = "off", **attrs) -> StringField:
    return StringField(label, render_kw={"autocomplete": autocomplete, **attrs})


def _password(label, autocomplete: str) -> PasswordField:
    return PasswordField(label, render_kw={"autocomplete": autocomplete})


def _email(label=_l("Email address")) -> EmailField:
    return EmailField(label, render_kw={"autocomplete": "email", "spellcheck": "false"})


def _code() -> StringField:
    return _text(_l("Code from the email"), "one-time-code", inputmode="numeric", maxlength="6", spellcheck="false")


class LoginForm(FlaskForm):
    aliases = {"email": "identifier", "username": "identifier"}
    identifier = _text(_l("Email or username"), "username", spellcheck="false", autocapitalize="none")
    password = _password(_l("Password"), "current-password")


class RegisterForm(FlaskForm):
    email = _email()
    password = _password(_l("Password"), "new-password")
    username = _text(_l("Username"), "username", spellcheck="false", autocapitalize="none")
    display_name = _text(_l("Display name"), "name")


class VerifyEmailForm(FlaskForm):
    code_fields = {"invalid_code": "code"}
    code = _code()


class ForgotPasswordForm(FlaskForm):
    email = _email()


class ResetPasswordForm(FlaskForm):
    code_fields = {"invalid_code": "code"}
    email = _email()
    code = _code()
    new_password = _password(_l("New password"), "new-password")


def _region_choices() -> list[SelectChoice]:
    return [SelectChoice(region.code, f"{region.name} ({region.code})") for region in REGIONS.values()]


def _language_choices() -> list[SelectChoice]:
    """The shipped languages, and the account's own tag when it is another (set through the API),
    so that saving the form never changes it unasked."""
    choices = [SelectChoice(code, name, render_kw={"lang": code}) for code, name in NAMES.items()]
    caller = g.get("caller")
    if caller is not None and caller.snapshot.user.locale not in NAMES:
        choices.insert(0, SelectChoice(caller.snapshot.user.locale, caller.snapshot.user.locale))
    return choices


class VersionedForm(FlaskForm):
    # The profile version the page showed: a change made elsewhere since is not overwritten.
    version = HiddenField()


class ProfileForm(VersionedForm):
    username = _text(_l("Username"), "username", spellcheck="false", autocapitalize="none")
    display_name = _text(_l("Display name"), "name")
    avatar_url = _text(_l("Avatar URL"), "url", type="url", spellcheck="false")
    region = SelectField(_l("Region"), choices=_region_choices, validate_choice=False)
    currency = _text(_l("Currency"), autocapitalize="characters", maxlength="3", spellcheck="false")
    locale = SelectField(_l("Language"), choices=_language_choices, validate_choice=False)
    timezone = _text(_l("Time zone"), spellcheck="false")


DIGEST_WORDS = {"off": _l("Off"), "daily": _l("Daily"), "weekly": _l("Weekly")}


class PreferencesForm(VersionedForm):
    notifications_email = BooleanField(_l("Email notifications"))
    notifications_push = BooleanField(_l("Push notifications"))
    notifications_digest = SelectField(_l("Digest email"), validate_choice=False,
                                       choices=[SelectChoice(value, DIGEST_WORDS[value]) for value in DIGESTS])
    ai_enabled = BooleanField(_l("AI features"))
    ai_model = _text(_l("AI model"), spellcheck="false")
    ai_data_sharing = BooleanField(_l("Share my data to improve AI features"))
    focus_default_minutes = IntegerField(_l("Focus session (minutes)"))
    focus_break_minutes = IntegerField(_l("Break (minutes)"))
    focus_daily_goal_minutes = IntegerField(_l("Daily focus goal (minutes)"))


class PasswordChangeForm(FlaskForm):
    code_fields = {"invalid_credentials": "current_password"}
    current_password = _password(_l("Current password"), "current-password")
    new_password = _password(_l("New password"), "new-password")


class DeleteAccountForm(FlaskForm):
    code_fields = {"invalid_credentials": "password"}
    password = _password(_l("Password"), "current-password")


# ---- two-step verification and passkeys --------------------------------------------------------
# `credential` holds the WebAuthn JSON the passkey script (static/passkeys.js) writes before submitting.

def _second_factor_code() -> StringField:
    return _text(_l("Code from your authenticator app, or a recovery code"), "one-time-code", spellcheck="false",
                 autocapitalize="none", maxlength="32")


class TotpConfirmForm(FlaskForm):
    code_fields = {"invalid_mfa_code": "code"}
    code = _text(_l("6-digit code from the app"), "one-time-code", inputmode="numeric", maxlength="6",
                 spellcheck="false")


class SecondStepForm(FlaskForm):
    code_fields = {"invalid_mfa_code": "code", "webauthn_failed": "code"}
    code = _second_factor_code()
    credential = HiddenField()


class ReauthenticateForm(FlaskForm):
    code_fields = {"invalid_credentials": "password", "invalid_mfa_code": "code", "webauthn_failed": "code"}
    password = _password(_l("Password"), "current-password")
    code = _second_factor_code()
    credential = HiddenField()


class PasskeyForm(FlaskForm):
    code_fields = {"webauthn_failed": "name", "factor_exists": "name"}
    name = _text(_l("Passkey name"), "off", maxlength="100", placeholder=_l("e.g. Work laptop"))
    credential = HiddenField()


class PasskeyLoginForm(FlaskForm):
    challenge_id = HiddenField()
    credential = HiddenField()


class EmailChangeForm(FlaskForm):
    aliases = {"newEmail": "new_email"}
    new_email = _email(_l("New email address"))


class EmailChangeConfirmForm(FlaskForm):
    code_fields = {"invalid_code": "code"}
    code = _code()


class LinkForm(FlaskForm):
    """The confirmation of a link mailed by the service: its token travels in the form, not the URL."""

    token = HiddenField()
