"""The preference sections of CONTRACT §3, named once: each field's type and default.

From SHAPE come the defaults (DEFAULTS, camelCase as stored and served), the patch params that
validate PATCH /users/me (gatehouse.params), the response schema (api.schemas) and the portal's
preference fields; a section or field added here is added to all of them.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic.alias_generators import to_camel

from gatehouse.vocabulary import Digest

Minutes = Annotated[int, Field(ge=1, le=600)]
AiModel = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")]

# section -> field (snake_case) -> (type, default)
SHAPE: dict[str, dict[str, tuple[object, object]]] = {
    "notifications": {"email": (bool, True), "push": (bool, True), "digest": (Digest, "weekly")},
    "ai": {"enabled": (bool, True), "model": (AiModel, "default"), "data_sharing": (bool, False)},
    "focus": {"default_minutes": (Minutes, 25), "break_minutes": (Minutes, 5), "daily_goal_minutes": (Minutes, 120)},
}

DEFAULTS: dict[str, dict] = {section: {to_camel(name): default for name, (_, default) in fields.items()}
                             for section, fields in SHAPE.items()}


def effective(overrides: dict | None) -> dict:
    """Defaults with the user's stored overrides laid over them, section by section."""
    overrides = overrides or {}
    result = {}
    for section, defaults in DEFAULTS.items():
        values = overrides.get(section)
        result[section] = {**defaults, **values} if isinstance(values, dict) else dict(defaults)
    return result
