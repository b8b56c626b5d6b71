"""/account (profile) and /account/preferences: forms turned into update_profile's patch."""
from __future__ import annotations

from flask import flash, redirect, url_for
from flask_babel import gettext
from pydantic.alias_generators import to_camel

from gatehouse import preferences
from gatehouse.clock import now
from gatehouse.errors import GatehouseError, NotFound, PreconditionFailed, field_error
from gatehouse.i18n import N_
from gatehouse.models import User
from gatehouse.params import ProfilePatch, parse, version_number
from gatehouse.services import profile
from portal import bp
from portal.forms import PreferencesForm, ProfileForm, VersionedForm
from portal.pages import form_post, page, refused
from portal.signin import caller, signed_in_only

PROFILE_FIELDS = ("username", "display_name", "avatar_url", "region", "currency", "locale", "timezone")
# Emptying one of these clears it (null in the patch); the others always hold a value.
CLEARABLE = frozenset({"username", "display_name", "avatar_url"})
PREFERENCE_FIELDS = {section: tuple(fields) for section, fields in preferences.SHAPE.items()}


def profile_patch(form: ProfileForm, user: User) -> dict:
    """Only what the form changed, so that a new region alone takes its default currency."""
    patch = {}
    for name in PROFILE_FIELDS:
        value = (form[name].data or "").strip()
        if value == (getattr(user, name) or ""):
            continue
        if value or name in CLEARABLE:
            patch[to_camel(name)] = value or None
    return patch


def preferences_patch(form: PreferencesForm) -> dict:
    return {"preferences": {section: {to_camel(name): form[f"{section}_{name}"].data for name in names}
                            for section, names in PREFERENCE_FIELDS.items()}}


def expected_version(form: VersionedForm) -> int | None:
    """The version the page showed; a value no page can have shown is refused (422), not guessed at."""
    text = (form.version.data or "").strip()
    if not text:
        return None
    version = version_number(text)
    if version is None:
        raise field_error("version", "is not a version of this profile; reload the page")
    return version


def save(form: VersionedForm, patch: dict, template: str, page_endpoint: str):
    """update_profile with the version the page showed; a change made elsewhere meanwhile reloads the page."""
    try:
        params = parse(ProfilePatch, patch)
        version = expected_version(form)
        profile.update_profile(caller().user_id, params, expected_version=version, now=now())
    except PreconditionFailed:
        flash(gettext("Your profile was changed elsewhere in the meantime. Here it is as it is now; "
              "make your change again."), "error")
        return redirect(url_for(page_endpoint))
    except GatehouseError as err:
        return refused(template, form, err)
    flash(gettext("Your changes are saved."), "success")
    return redirect(url_for(page_endpoint))


@bp.get("/account", endpoint="profile")
@signed_in_only
def profile_page():
    user = caller().user
    form = ProfileForm(version=user.version, **{name: getattr(user, name) for name in PROFILE_FIELDS})
    return page("profile.html", form=form)


@form_post("/account")
@signed_in_only
def profile_submit():
    form = ProfileForm()
    return save(form, profile_patch(form, caller().user), "profile.html", "portal.profile")


@bp.get("/account/preferences", endpoint="preferences")
@signed_in_only
def preferences_page():
    user = caller().user
    shown = preferences.effective(user.settings.preferences if user.settings else None)
    values = {f"{section}_{name}": shown[section][to_camel(name)]
              for section, names in PREFERENCE_FIELDS.items() for name in names}
    return page("preferences.html", form=PreferencesForm(version=user.version, **values))


@form_post("/account/preferences")
@signed_in_only
def preferences_submit():
    form = PreferencesForm()
    if not form.validate():  # whole numbers that are not numbers at all
        return page("preferences.html", 422, form=form)
    return save(form, preferences_patch(form), "preferences.html", "portal.preferences")


@bp.route("/account/<path:_>", methods=["GET", "POST"])
def unknown_account_page(_: str):
    raise NotFound(N_("There is no such page."))
