"""Signing in and out: /, /login, /register, /logout, /verify-email, /forgot-password, /reset-password."""
from __future__ import annotations

from flask import flash, redirect, session, url_for
from flask_babel import gettext

from gatehouse.clock import now
from gatehouse.errors import GatehouseError, MfaRequired
from gatehouse.params import (ForgotPasswordParams, LoginParams, RegisterParams, ResetPasswordParams,
                              VerifyEmailParams, parse)
from gatehouse.services import accounts, recovery
from portal import bp, signin
from portal.forms import ForgotPasswordForm, LoginForm, RegisterForm, ResetPasswordForm, VerifyEmailForm
from portal.mfa_pages import await_second_step
from portal.pages import entered, form_post, given, page, refused
from portal.signin import caller, guests_only, signed_in_only

# Remembers the address a reset code was asked for, to fill in the reset form.
RESET_EMAIL = "reset_email"


@bp.get("/")
def index():
    return redirect(signin.landing(caller().user) if caller() else url_for("portal.login"))


@bp.get("/login")
@guests_only
def login():
    return page("login.html", form=LoginForm())


@form_post("/login")
@guests_only
def login_submit():
    form = LoginForm()
    identifier = entered(form.identifier)  # one box for both: a username never contains "@"
    body = given(password=form.password.data, **{"email" if "@" in identifier else "username": identifier})
    try:
        result = accounts.login(parse(LoginParams, body), now=now(), kind="portal", **signin.client())
    except MfaRequired as err:
        return await_second_step(err)
    except GatehouseError as err:
        return refused("login.html", form, err)
    signin.start(result)
    return redirect(signin.landing(result.user))


@bp.get("/register")
@guests_only
def register():
    return page("register.html", form=RegisterForm())


@form_post("/register")
@guests_only
def register_submit():
    form = RegisterForm()
    body = given(email=entered(form.email), password=form.password.data,
                 username=entered(form.username), displayName=entered(form.display_name))
    try:
        result = accounts.register(parse(RegisterParams, body), now=now(), kind="portal", **signin.client())
    except GatehouseError as err:
        return refused("register.html", form, err)
    signin.start(result)
    flash(gettext("Your account is ready. We sent a code to your email address."), "success")
    return redirect(signin.landing(result.user))


@form_post("/logout")
def logout():
    if caller() is not None:
        accounts.logout(caller(), all_sessions=False, now=now())
    signin.end()
    flash(gettext("You are signed out."), "success")
    return redirect(url_for("portal.login"))


@bp.get("/verify-email")
@signed_in_only
def verify_email():
    if caller().snapshot.user.email_verified_at is not None:
        return redirect(url_for("portal.profile"))
    return page("verify_email.html", form=VerifyEmailForm())


@form_post("/verify-email")
@signed_in_only
def verify_email_submit():
    form = VerifyEmailForm()
    try:
        params = parse(VerifyEmailParams, given(code=entered(form.code)))
        recovery.verify_email(caller().user, params.code, now())
    except GatehouseError as err:
        return refused("verify_email.html", form, err)
    flash(gettext("Your email address is verified."), "success")
    return redirect(url_for("portal.profile"))


@form_post("/verify-email/resend")
@signed_in_only
def resend_verification():
    try:
        recovery.resend_verification(caller().user, now())
    except GatehouseError as err:
        return refused("verify_email.html", VerifyEmailForm(), err)
    flash(gettext("A new code is on its way; the previous one no longer works."), "success")
    return redirect(url_for("portal.verify_email"))


@bp.get("/forgot-password")
def forgot_password():
    return page("forgot_password.html", form=ForgotPasswordForm())


@form_post("/forgot-password")
def forgot_password_submit():
    form = ForgotPasswordForm()
    try:
        params = parse(ForgotPasswordParams, given(email=entered(form.email)))
        recovery.forgot_password(params, now())
    except GatehouseError as err:
        return refused("forgot_password.html", form, err)
    session[RESET_EMAIL] = params.email
    flash(gettext("If an account uses this address, a reset code is on its way."), "success")
    return redirect(url_for("portal.reset_password"))


@bp.get("/reset-password")
def reset_password():
    return page("reset_password.html", form=ResetPasswordForm(email=session.get(RESET_EMAIL)))


@form_post("/reset-password")
def reset_password_submit():
    form = ResetPasswordForm()
    body = given(email=entered(form.email), code=entered(form.code),
                 newPassword=form.new_password.data)
    try:
        recovery.reset_password(parse(ResetPasswordParams, body), now())
    except GatehouseError as err:
        return refused("reset_password.html", form, err)
    signin.end()  # every session of the account was revoked
    flash(gettext("Your password was changed. Sign in with the new password."), "success")
    return redirect(url_for("portal.login"))
