"""/account/security: two-step verification, password change, sessions and devices (each with its own revoke
form), account deletion."""
from __future__ import annotations

from flask import flash, redirect, url_for
from flask_babel import gettext, ngettext

from gatehouse.clock import now
from gatehouse.i18n import N_
from gatehouse.errors import GatehouseError, NotFound
from gatehouse.params import DeleteAccountParams, PasswordChangeParams, parse
from gatehouse.security.factors import RECOVERY_COUNT
from gatehouse.services import devices, factors, profile, sessions
from portal import bp, signin
from portal.forms import DeleteAccountForm, PasskeyForm, PasswordChangeForm
from portal.mfa_pages import fresh_only
from portal.pages import form_post, given, page, refuse, status_of
from portal.signin import caller, signed_in_only


def security_page(status: int = 200, **forms):
    """The page with its lists as they are now, and any form that was refused in place of a fresh one."""
    who = caller()
    return page("security.html", status,
                sessions=sessions.live_of_user(who.user_id, now()), current_id=who.session_id,
                devices=devices.of_user(who.user_id), mfa=factors.summary(who.user_id),
                recovery_codes_total=RECOVERY_COUNT,
                passkey_form=forms.get("passkey_form") or PasskeyForm(),
                password_form=forms.get("password_form") or PasswordChangeForm(),
                delete_form=forms.get("delete_form") or DeleteAccountForm())


def refused_here(name: str, form, err: GatehouseError):
    refuse(form, err)
    status, headers = status_of(err)
    body, status = security_page(status, **{name: form})
    return body, status, headers


@bp.get("/account/security", endpoint="security")
@signed_in_only
def security():
    return security_page()


@form_post("/account/security/password")
@signed_in_only
@fresh_only
def change_password():
    form = PasswordChangeForm()
    body = given(currentPassword=form.current_password.data, newPassword=form.new_password.data)
    try:
        revoked = profile.update_password(caller(), parse(PasswordChangeParams, body), now=now())
    except GatehouseError as err:
        return refused_here("password_form", form, err)
    message = gettext("Your password was changed.")
    if revoked:
        message += " " + ngettext("%(num)d other session was signed out.", "%(num)d other sessions were signed out.",
                                  len(revoked))
    flash(message, "success")
    return redirect(url_for("portal.security"))


def sign_out_session(session_id: str, back_to: str):
    """Revoke one of the caller's sessions and go back to `back_to`; the browser's own ends its sign-in."""
    if not sessions.revoke_one(caller().user_id, session_id, now()):
        raise NotFound(N_("No such session."))
    if session_id == caller().session_id:
        signin.end()
        flash(gettext("You signed out of this browser."), "success")
        return redirect(url_for("portal.login"))
    flash(gettext("The session was signed out."), "success")
    return redirect(url_for(back_to))


@form_post("/account/security/sessions/<session_id>/revoke")
@signed_in_only
def revoke_session(session_id: str):
    return sign_out_session(session_id, "portal.security")


@form_post("/account/security/devices/<device_id>/forget")
@signed_in_only
def forget_device(device_id: str):
    if not devices.forget(caller().user_id, device_id, now()):
        raise NotFound(N_("No such device."))
    flash(gettext("The device was removed and its sessions signed out."), "success")
    return redirect(url_for("portal.security"))


@form_post("/account/security/delete")
@signed_in_only
@fresh_only
def delete_account():
    form = DeleteAccountForm()
    try:
        params = parse(DeleteAccountParams, given(password=form.password.data))
        profile.delete_account(caller(), params.password, now=now())
    except GatehouseError as err:
        return refused_here("delete_form", form, err)
    signin.end()
    flash(gettext("Your account was deleted."), "success")
    return redirect(url_for("portal.login"))
