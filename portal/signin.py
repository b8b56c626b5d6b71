"""The browser's signed-in state: Flask's signed session cookie holds the Gatehouse session id only.

Every portal request re-checks that session (live, account active), so a revocation from the API
or another page signs the browser out at its next request. No token ever reaches the browser.
"""
from __future__ import annotations

from functools import wraps
from typing import Callable

from flask import flash, g, redirect, request, session, url_for
from flask_babel import gettext

from gatehouse.clock import now
from gatehouse.errors import TokenRevoked
from gatehouse.models import User
from gatehouse.services import sessions
from gatehouse.services.accounts import SignIn
from portal import bp

# The cookie's key for the Gatehouse session id; /ws authenticates the portal's cookie by it too.
SESSION_ID = "sid"


def client() -> dict:
    return {"ip_address": request.remote_addr, "user_agent": request.user_agent.string}


@bp.before_request
def load_caller() -> None:
    g.caller = None
    session_id = session.get(SESSION_ID)
    if session_id is None:
        return
    try:
        g.caller = sessions.resume(session_id, now())
    except TokenRevoked:
        session.clear()
        flash(gettext("Your session has ended. Please sign in again."), "info")
        return
    sessions.touch(g.caller.snapshot.session, now())


@bp.context_processor
def caller_in_templates() -> dict:
    return {"caller": g.get("caller")}


def caller() -> sessions.Caller:
    return g.caller


def start(result: SignIn) -> None:
    """Remember a new sign-in; whatever the cookie held before (a CSRF token too) is dropped."""
    session.clear()
    session.permanent = True
    session[SESSION_ID] = result.session.id


def end() -> None:
    session.clear()


def landing(user: User) -> str:
    """Where a sign-in lands: the page asking for the emailed code while the address is unverified."""
    return url_for("portal.verify_email" if user.email_verified_at is None else "portal.profile")


def signed_in_only(view: Callable) -> Callable:
    @wraps(view)
    def guarded(**kwargs):
        if g.caller is None:
            return redirect(url_for("portal.login"))
        return view(**kwargs)

    return guarded


def guests_only(view: Callable) -> Callable:
    @wraps(view)
    def guarded(**kwargs):
        if g.caller is not None:
            return redirect(landing(g.caller.user))
        return view(**kwargs)

    return guarded
