"""Changing the email address (/account/email, its code step, and the revert link of the old address)."""
from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_babel import gettext

from gatehouse.clock import now
from gatehouse.errors import GatehouseError
from gatehouse.params import EmailChangeParams, LinkTokenParams, VerifyEmailParams, parse
from gatehouse.services import email_change
from portal import bp, signin
from portal.forms import EmailChangeConfirmForm, EmailChangeForm, LinkForm
from portal.mfa_pages import fresh_only
from portal.pages import entered, form_post, given, page, refused
from portal.signin import caller, signed_in_only


@bp.get("/account/email", endpoint="email_change")
@signed_in_only
@fresh_only
def email_change_page():
    return page("email_change.html", form=EmailChangeForm())


@form_post("/account/email")
@signed_in_only
@fresh_only
def email_change_submit():
    form = EmailChangeForm()
    try:
        email_change.request_change(caller(), parse(EmailChangeParams, given(newEmail=entered(form.new_email))), now())
    except GatehouseError as err:
        return refused("email_change.html", form, err)
    flash(gettext("We sent a code to %(email)s. Enter it to finish the change.", email=entered(form.new_email)),
          "success")
    return redirect(url_for("portal.email_change_confirm"))


@bp.get("/account/email/confirm", endpoint="email_change_confirm")
@signed_in_only
def email_change_confirm_page():
    return page("email_change_confirm.html", form=EmailChangeConfirmForm())


@form_post("/account/email/confirm")
@signed_in_only
def email_change_confirm_submit():
    form = EmailChangeConfirmForm()
    try:
        params = parse(VerifyEmailParams, given(code=entered(form.code)))
        user = email_change.confirm(caller(), params.code, now())
    except GatehouseError as err:
        return refused("email_change_confirm.html", form, err)
    flash(gettext("Your email address is now %(email)s.", email=user.email), "success")
    return redirect(url_for("portal.profile"))


@bp.get("/account/email/revert", endpoint="email_revert")
def email_revert_page():
    """What the link of the old address's notice opens: a question, never the change itself (a mail
    scanner that fetches the link changes nothing)."""
    return page("email_revert.html", form=LinkForm(token=request.args.get("token", "")))


@form_post("/account/email/revert")
def email_revert_submit():
    form = LinkForm()
    try:
        email_change.revert(parse(LinkTokenParams, given(token=form.token.data)).token, now())
    except GatehouseError as err:
        return refused("email_revert.html", form, err)
    signin.end()  # every session of the account was revoked
    flash(gettext("Your previous email address is back and every device was signed out. We mailed it a code: "
                  "choose a new password with it."), "success")
    return redirect(url_for("portal.reset_password"))
