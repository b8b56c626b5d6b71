"""The preference sections of CONTRACT §3, their defaults, and the effective view of a user's overrides."""
from __future__ import annotations

DEFAULTS: dict[str, dict] = {
    "notifications": {"email": True, "push": True, "digest": "weekly"},
    "ai": {"enabled": True, "model": "default", "dataSharing": False},
    "focus": {"defaultMinutes": 25, "breakMinutes": 5, "dailyGoalMinutes": 120},
}


def effective(overrides: dict | None) -> dict:
    """Defaults with the user's stored overrides laid over them, section by section."""
    overrides = overrides or {}
    result = {}
    for section, defaults in DEFAULTS.items():
        values = overrides.get(section)
        result[section] = {**defaults, **values} if isinstance(values, dict) else dict(defaults)
    return result
