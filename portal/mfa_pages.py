"""Two-step verification in the portal: the second step of a sign-in, passkey sign-in, reauthentication,
and the factors section of /account/security. The same services as the JSON API; the passkey
buttons need static/passkeys.js, everything else works without JavaScript."""
from __future__ import annotations

import json
from functools import wraps
from typing import Callable
from urllib.parse import quote

from flask import flash, jsonify, redirect, request, session, url_for
from flask_babel import gettext

from gatehouse.clock import now
from gatehouse.errors import GatehouseError, ReauthenticationRequired, ValidationFailed
from gatehouse.i18n import N_
from gatehouse.params import (MfaVerifyParams, PasskeyLoginParams, PasskeyParams,
                              ReauthenticateParams, TotpConfirmParams, parse)
from gatehouse.services import factors, passkeys, stepup
from portal import bp, signin
from portal.forms import (PasskeyForm, PasskeyLoginForm, ReauthenticateForm, SecondStepForm, TotpConfirmForm)
from portal.pages import entered, form_post, given, page, refused, said
from portal.signin import caller, guests_only, signed_in_only

# The cookie's key for the mfaToken of a sign-in waiting for its second step.
MFA_TOKEN = "mfa_token"
MFA_METHODS = "mfa_methods"


def _credential(raw: str | None) -> dict | None:
    """The JSON the passkey script put in the hidden field; ValidationFailed when it is not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ValidationFailed(errors=[{"field": "credential", "message": N_("is not a passkey answer")}]) from None


# ---- second step of a sign-in ------------------------------------------------------------------

def await_second_step(err: GatehouseError):
    """The password was right: remember the mfaToken and ask for the second factor."""
    session[MFA_TOKEN] = err.extensions["mfaToken"]
    session[MFA_METHODS] = err.extensions["methods"]
    return redirect(url_for("portal.second_step"))


def _second_step_page(form=None, status: int = 200):
    return page("second_step.html", status, form=form or SecondStepForm(), methods=session.get(MFA_METHODS, []))


@bp.get("/login/second-step")
@guests_only
def second_step():
    if MFA_TOKEN not in session:
        return redirect(url_for("portal.login"))
    return _second_step_page()


@form_post("/login/second-step")
@guests_only
def second_step_submit():
    form = SecondStepForm()
    try:
        body = given(mfaToken=session.get(MFA_TOKEN), code=entered(form.code))
        credential = _credential(form.credential.data)
        if credential is not None:
            body = {"mfaToken": session.get(MFA_TOKEN), "credential": credential}
        result = stepup.verify(parse(MfaVerifyParams, body), user_agent=request.user_agent.string, now=now())
    except GatehouseError as err:
        if err.code == "token_invalid":
            session.pop(MFA_TOKEN, None)
            flash(gettext("That sign-in has expired or was refused too often. Please sign in again."), "error")
            return redirect(url_for("portal.login"))
        return refused("second_step.html", form, err, methods=session.get(MFA_METHODS, []))
    signin.start(result)
    return redirect(signin.landing(result.user))


@bp.post("/login/second-step/passkey-options")
def second_step_passkey_options():
    try:
        return jsonify(options=stepup.passkey_options(session.get(MFA_TOKEN) or "", now()))
    except GatehouseError as err:
        return jsonify(error=said(err)), err.status


# ---- passwordless ------------------------------------------------------------------------------

@bp.post("/login/passkey/options")
def passkey_login_options():
    challenge_id, options = passkeys.request_options(None, "login", now())
    return jsonify(options=options, challengeId=challenge_id)


@form_post("/login/passkey")
@guests_only
def passkey_login():
    form = PasskeyLoginForm()
    try:
        params = parse(PasskeyLoginParams, {"challengeId": form.challenge_id.data or "",
                                            "credential": _credential(form.credential.data)})
        result = stepup.passkey_login(params, now=now(), kind="portal", **signin.client())
    except GatehouseError as err:
        from portal.forms import LoginForm

        login_form = LoginForm()
        login_form.alert = gettext("The passkey did not sign you in: %(reason)s", reason=said(err))
        return page("login.html", err.status, form=login_form)
    signin.start(result)
    return redirect(signin.landing(result.user))


# ---- fresh -------------------------------------------------------------------------------------

def fresh_only(view: Callable) -> Callable:
    """The change needs a recent sign-in at the account's level; otherwise the reauthentication page first."""

    @wraps(view)
    def guarded(**kwargs):
        try:
            stepup.require_fresh(caller(), now())
        except ReauthenticationRequired:
            flash(gettext("For your security, confirm it is you before this change."), "info")
            return redirect(url_for("portal.reauthenticate"))
        return view(**kwargs)

    return guarded


def _reauth_page(form=None, status: int = 200):
    return page("reauthenticate.html", status, form=form or ReauthenticateForm(),
                methods=factors.methods_of(caller().user_id))


@bp.get("/account/reauthenticate")
@signed_in_only
def reauthenticate():
    return _reauth_page()


@form_post("/account/reauthenticate")
@signed_in_only
def reauthenticate_submit():
    form = ReauthenticateForm()
    try:
        body = given(password=form.password.data, code=entered(form.code))
        credential = _credential(form.credential.data)
        if credential is not None:
            body["credential"] = credential
            body.pop("code", None)
        stepup.reauthenticate(caller(), parse(ReauthenticateParams, body), now(), issue=False)
    except GatehouseError as err:
        return refused("reauthenticate.html", form, err, methods=factors.methods_of(caller().user_id))
    flash(gettext("Thank you. You can make your change now."), "success")
    return redirect(url_for("portal.security"))


@bp.post("/account/reauthenticate/passkey-options")
@signed_in_only
def reauth_passkey_options():
    return jsonify(options=stepup.reauth_passkey_options(caller(), now()))


# ---- /account/security: the factors ------------------------------------------------------------

def recovery_codes_page(codes: list[str]):
    text = (gettext("%(product)s recovery codes", product="Gatehouse") + "\n\n" + "\n".join(codes) + "\n\n"
            + gettext("Each code works once.") + "\n")
    return page("recovery_codes.html", codes=codes, download="data:text/plain;charset=utf-8," + quote(text))


@form_post("/account/security/totp")
@signed_in_only
@fresh_only
def start_totp():
    try:
        factors.start_totp(caller(), now())
    except GatehouseError as err:
        flash(said(err), "error")
        return redirect(url_for("portal.security"))
    return redirect(url_for("portal.totp_setup"))


def _totp_setup_page(form=None, status: int = 200, err: GatehouseError | None = None):
    enrolment = factors.pending_totp(caller().user, now())
    if enrolment is None:
        flash(gettext("Setting up the authenticator app took longer than 10 minutes; please start again."), "error")
        return redirect(url_for("portal.security"))
    if err is not None:
        return refused("totp_setup.html", form, err, enrolment=enrolment)
    return page("totp_setup.html", status, form=form or TotpConfirmForm(), enrolment=enrolment)


@bp.get("/account/security/totp")
@signed_in_only
def totp_setup():
    return _totp_setup_page()


@form_post("/account/security/totp/confirm")
@signed_in_only
@fresh_only
def confirm_totp():
    form = TotpConfirmForm()
    try:
        codes = factors.confirm_totp(caller(), parse(TotpConfirmParams, given(code=entered(form.code))).code, now())
    except GatehouseError as err:
        return _totp_setup_page(form, err=err)
    flash(gettext("Two-step verification with the authenticator app is on."), "success")
    return recovery_codes_page(codes) if codes else redirect(url_for("portal.security"))


@form_post("/account/security/totp/remove")
@signed_in_only
@fresh_only
def remove_totp():
    factors.remove_totp(caller(), now())
    flash(gettext("The authenticator app was removed."), "success")
    return redirect(url_for("portal.security"))


@form_post("/account/security/recovery-codes")
@signed_in_only
@fresh_only
def regenerate_recovery_codes():
    try:
        codes = factors.regenerate_recovery_codes(caller(), now())
    except GatehouseError as err:
        flash(said(err), "error")
        return redirect(url_for("portal.security"))
    flash(gettext("New recovery codes were made; the old ones no longer work."), "success")
    return recovery_codes_page(codes)


@bp.post("/account/security/passkeys/options")
@signed_in_only
def passkey_creation_options():
    try:
        stepup.require_fresh(caller(), now())
    except ReauthenticationRequired as err:
        return jsonify(error=said(err), reauthenticate=url_for("portal.reauthenticate")), 401
    return jsonify(options=passkeys.creation_options(caller(), now()))


@form_post("/account/security/passkeys")
@signed_in_only
@fresh_only
def add_passkey():
    form = PasskeyForm()
    try:
        body = {**given(name=entered(form.name)), "credential": _credential(form.credential.data)}
        params = parse(PasskeyParams, body)
        passkeys.register(caller(), params.credential, params.name, now())
    except GatehouseError as err:
        from portal.security_pages import refused_here

        return refused_here("passkey_form", form, err)
    flash(gettext("The passkey was added."), "success")
    return redirect(url_for("portal.security"))


@form_post("/account/security/passkeys/<passkey_id>/remove")
@signed_in_only
@fresh_only
def remove_passkey(passkey_id: str):
    passkeys.remove(caller(), passkey_id, now())
    flash(gettext("The passkey was removed."), "success")
    return redirect(url_for("portal.security"))
