"""/account/activity: the account's security timeline in words, and "this wasn't me" (/not-me)."""
from __future__ import annotations

from datetime import datetime

from babel.dates import format_timedelta
from flask import flash, redirect, request, url_for
from flask_babel import get_locale, gettext

from gatehouse.clock import now
from gatehouse.errors import GatehouseError
from gatehouse.i18n import N_
from gatehouse.models import SecurityEvent
from gatehouse.params import LinkTokenParams, SecurityEventsQuery, parse, parse_query
from gatehouse.services import alerts, security_events, sessions
from gatehouse.user_agents import describe
from portal import bp
from portal.forms import LinkForm
from portal.pages import form_post, given, page, refused
from portal.security_pages import sign_out_session
from portal.signin import caller, signed_in_only

# What each kind of event says on the page.
SAID = {
    "signed_in": N_("Signed in"),
    "sign_in_failed": N_("A sign-in failed"),
    "signed_out": N_("Signed out"),
    "session_revoked": N_("A session was signed out"),
    "refresh_token_reused": N_("A session token was used twice; that session was signed out"),
    "password_changed": N_("Password changed"),
    "password_reset": N_("Password reset with an emailed code"),
    "email_change_requested": N_("Email change asked for"),
    "email_changed": N_("Email address changed"),
    "email_reverted": N_("Email change undone"),
    "mfa_enabled": N_("Two-step verification turned on"),
    "mfa_disabled": N_("Two-step verification turned off"),
    "recovery_codes_regenerated": N_("New recovery codes made"),
    "passkey_added": N_("Passkey added"),
    "passkey_removed": N_("Passkey removed"),
    "recovery_code_used": N_("Recovery code used"),
    "new_device": N_("Sign-in from a new device or network"),
    "not_me": N_("A sign-in was reported as not you"),
    "locked": N_("Password locked after too many failed sign-ins"),
    "account_deleted": N_("Account deleted"),
    "account_restored": N_("Account restored"),
    "role_changed": N_("Role changed by an admin"),
    "disabled": N_("Account disabled by an admin"),
    "enabled": N_("Account enabled by an admin"),
    "mfa_reset": N_("Two-step verification reset by an admin"),
}
PAGE_SIZE = 20


def software(user_agent: str | None) -> str | None:
    """"Firefox on Linux", "Firefox", or None when the header tells nothing."""
    found = describe(user_agent)
    if found.browser and found.os:
        return gettext("%(browser)s on %(os)s", browser=found.browser, os=found.os)
    return found.browser or found.os


def ago(moment: datetime, at: datetime) -> str:
    """"10 minutes ago" in the page's language."""
    return format_timedelta(moment - at, add_direction=True, locale=str(get_locale()))


def line(event: SecurityEvent, moment: datetime) -> str:
    """"Signed in from Firefox on Linux · 127.0.0.1 · 10 minutes ago"."""
    what = gettext(SAID[event.kind])
    made_with = software(event.user_agent)
    parts = [gettext("%(what)s from %(software)s", what=what, software=made_with) if made_with else what]
    if event.ip_address:
        parts.append(event.ip_address)
    parts.append(ago(event.at, moment))
    return " · ".join(parts)


@bp.get("/account/activity", endpoint="activity")
@signed_in_only
def activity():
    who = caller()
    query = parse_query(SecurityEventsQuery, {"cursor": request.args.getlist("cursor")})
    found = security_events.page(who.user_id, query.cursor, PAGE_SIZE)
    moment = now()
    live = {s.id for s in sessions.live_of_user(who.user_id, moment)}
    rows = [{"event": e, "line": line(e, moment),
             "revocable": e.kind == "signed_in" and e.session_id in live, "current": e.session_id == who.session_id}
            for e in found.events]
    return page("activity.html", rows=rows, next_cursor=found.next_cursor, first=query.cursor is None)


@form_post("/account/activity/sessions/<session_id>/revoke")
@signed_in_only
def revoke_from_activity(session_id: str):
    return sign_out_session(session_id, "portal.activity")


@bp.get("/not-me", endpoint="not_me")
def not_me_page():
    """What the "this wasn't me" link opens: the sign-in it reports and a button; a GET changes nothing."""
    token = request.args.get("token", "")
    reported = alerts.reported_session(token, now()) if 0 < len(token) <= 128 else None
    return page("not_me.html", form=LinkForm(token=token), reported=reported,
                software=software(reported.user_agent) if reported else None)


@form_post("/not-me")
def not_me_submit():
    form = LinkForm()
    try:
        alerts.not_me(parse(LinkTokenParams, given(token=form.token.data)).token, now())
    except GatehouseError as err:
        return refused("not_me.html", form, err, reported=None, software=None)
    flash(gettext("That sign-in was ended and your password locked. Choose a new one with the code we mail you."),
          "success")
    return redirect(url_for("portal.forgot_password"))
