"""preferences in PATCH /users/me: JSON Merge Patch over the stored overrides, strict per-section schemas."""
from __future__ import annotations

import pytest

from gatehouse.extensions import db
from gatehouse.models import User, UserSettings
from gatehouse.preferences import DEFAULTS
from gatehouse.services.profile import merge_patch
from tests.actions import problem


@pytest.fixture
def me(api):
    body = api.register()
    return {"id": body["user"]["id"], "token": body["tokens"]["accessToken"]}


def overrides(app, user_id: str) -> dict:
    with app.app_context():
        return db.session.get(UserSettings, user_id).preferences


def version(app, user_id: str) -> int:
    with app.app_context():
        return db.session.get(User, user_id).version


def patch(api, me, preferences, expect: int = 200) -> dict:
    response = api.patch("/users/me", {"preferences": preferences}, me["token"])
    assert response.status_code == expect, response.get_json()
    return response.get_json()


def test_a_new_user_has_the_defaults_and_no_overrides(app, api, me):
    assert api.get("/users/me", me["token"]).get_json()["user"]["preferences"] == DEFAULTS
    assert overrides(app, me["id"]) == {}


def test_a_patch_stores_only_the_override_and_shows_it_over_the_defaults(app, api, me, events):
    shown = patch(api, me, {"focus": {"defaultMinutes": 50}})["user"]["preferences"]
    assert shown["focus"] == {"defaultMinutes": 50, "breakMinutes": 5, "dailyGoalMinutes": 120}
    assert shown["ai"] == DEFAULTS["ai"]
    assert overrides(app, me["id"]) == {"focus": {"defaultMinutes": 50}}
    assert version(app, me["id"]) == 2
    assert [data for _, event, data in events if event == "entity:updated"] == [
        {"entity": "user", "id": me["id"], "version": 2, "fields": ["preferences"]}]


def test_patches_merge_key_by_key(app, api, me):
    patch(api, me, {"focus": {"defaultMinutes": 50}})
    patch(api, me, {"focus": {"breakMinutes": 10}, "notifications": {"digest": "daily"}})
    assert overrides(app, me["id"]) == {"focus": {"defaultMinutes": 50, "breakMinutes": 10},
                                        "notifications": {"digest": "daily"}}
    assert version(app, me["id"]) == 3


def test_null_removes_a_key_back_to_its_default(app, api, me):
    patch(api, me, {"focus": {"defaultMinutes": 50, "breakMinutes": 10}})
    shown = patch(api, me, {"focus": {"defaultMinutes": None}})["user"]["preferences"]
    assert shown["focus"]["defaultMinutes"] == 25
    assert shown["focus"]["breakMinutes"] == 10
    assert overrides(app, me["id"]) == {"focus": {"breakMinutes": 10}}


def test_removing_the_last_key_of_a_section_removes_the_section(app, api, me):
    patch(api, me, {"ai": {"model": "large-2"}, "focus": {"breakMinutes": 10}})
    patch(api, me, {"ai": {"model": None}})
    assert overrides(app, me["id"]) == {"focus": {"breakMinutes": 10}}


def test_null_section_and_null_preferences_reset_to_defaults(app, api, me):
    patch(api, me, {"ai": {"enabled": False, "dataSharing": True}, "focus": {"breakMinutes": 10}})
    patch(api, me, {"ai": None})
    assert overrides(app, me["id"]) == {"focus": {"breakMinutes": 10}}
    shown = patch(api, me, None)["user"]["preferences"]
    assert shown == DEFAULTS
    assert overrides(app, me["id"]) == {}


def test_removing_what_is_not_overridden_changes_nothing(app, api, me, events):
    body = patch(api, me, {"focus": {"defaultMinutes": None}, "ai": None})
    assert body["user"]["version"] == 1
    patch(api, me, {})
    assert version(app, me["id"]) == 1
    assert events == []


def test_the_same_value_again_changes_nothing(app, api, me):
    patch(api, me, {"notifications": {"push": False}})
    patch(api, me, {"notifications": {"push": False}})
    assert version(app, me["id"]) == 2


def test_every_documented_field_is_accepted(app, api, me):
    values = {"notifications": {"email": False, "push": False, "digest": "off"},
              "ai": {"enabled": False, "model": "claude-3.5:latest", "dataSharing": True},
              "focus": {"defaultMinutes": 1, "breakMinutes": 600, "dailyGoalMinutes": 300}}
    assert patch(api, me, values)["user"]["preferences"] == values
    assert overrides(app, me["id"]) == values


REFUSED = [
    ({"theme": {"dark": True}}, "preferences.theme"),
    ({"focus": {"pomodoros": 4}}, "preferences.focus.pomodoros"),
    ({"focus": {"default_minutes": 30}}, "preferences.focus.default_minutes"),
    ({"focus": {"defaultMinutes": "30"}}, "preferences.focus.defaultMinutes"),
    ({"focus": {"defaultMinutes": 30.0}}, "preferences.focus.defaultMinutes"),
    ({"focus": {"defaultMinutes": 25.5}}, "preferences.focus.defaultMinutes"),
    ({"focus": {"defaultMinutes": True}}, "preferences.focus.defaultMinutes"),
    ({"focus": {"breakMinutes": 0}}, "preferences.focus.breakMinutes"),
    ({"focus": {"dailyGoalMinutes": 601}}, "preferences.focus.dailyGoalMinutes"),
    ({"notifications": {"digest": "monthly"}}, "preferences.notifications.digest"),
    ({"notifications": {"email": "yes"}}, "preferences.notifications.email"),
    ({"notifications": {"push": 1}}, "preferences.notifications.push"),
    ({"ai": {"model": ""}}, "preferences.ai.model"),
    ({"ai": {"model": "m" * 65}}, "preferences.ai.model"),
    ({"ai": {"model": 3}}, "preferences.ai.model"),
    ({"ai": {"model": "two words"}}, "preferences.ai.model"),
    ({"ai": {"dataSharing": "false"}}, "preferences.ai.dataSharing"),
    ({"focus": 30}, "preferences.focus"),
    ({"focus": [30]}, "preferences.focus"),
]


@pytest.mark.parametrize(("value", "field"), REFUSED, ids=[f for _, f in REFUSED])
def test_unknown_keys_and_wrong_types_are_refused_naming_the_field(app, api, me, events, value, field):
    api.patch("/users/me", {"preferences": {"notifications": {"push": False}}}, me["token"])
    body = problem(api.patch("/users/me", {"preferences": {"ai": {"enabled": False}, **value}}, me["token"]),
                   422, "validation_failed")
    assert [error["field"] for error in body["errors"]] == [field]
    assert overrides(app, me["id"]) == {"notifications": {"push": False}}
    assert version(app, me["id"]) == 2
    assert len(events) == 1


@pytest.mark.parametrize("value", [[], "dark", 1, True])
def test_preferences_must_be_an_object(app, api, me, value):
    body = problem(api.patch("/users/me", {"preferences": value}, me["token"]), 422, "validation_failed")
    assert body["errors"][0]["field"] == "preferences"


def test_preferences_and_profile_fields_change_in_one_version(app, api, me, events):
    api.patch("/users/me", {"displayName": "P", "preferences": {"focus": {"defaultMinutes": 45}}}, me["token"])
    assert version(app, me["id"]) == 2
    assert events[-1][2]["fields"] == ["displayName", "preferences"]


# RFC 7396 Appendix A, the examples that apply to objects.
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch_", "result"), RFC_EXAMPLES)
def test_merge_patch_follows_rfc_7396(target, patch_, result):
    assert merge_patch(target, patch_) == result
