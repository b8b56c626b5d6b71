"""The languages Gatehouse speaks (CONTRACT §12): which one a page or a mail gets, and dates in the
reader's time zone and language.

Pages: the signed-in user's `locale`; signed out, the language chosen on the page (a cookie), else
the best of `Accept-Language`; English otherwise. Mails: the recipient's `locale` when queued.
A tag Gatehouse does not ship ("pt-BR") falls back to its language ("pt"), then to English.
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime

LANGUAGES = ("en", "de", "fr", "es")
DEFAULT = "en"
# Each language named in itself, for the chooser.
NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español"}
COOKIE = "gatehouse_lang"


def N_(message: str) -> str:
    """Mark a message for the catalogues where it is defined; it is translated where it is shown."""
    return message


def supported(tag: str | None) -> str | None:
    """The shipped language of a BCP 47 tag ("de-CH" -> "de"), or None."""
    if not tag:
        return None
    language = tag.replace("_", "-").split("-", 1)[0].lower()
    return language if language in LANGUAGES else None


def language_of(tag: str | None) -> str:
    return supported(tag) or DEFAULT


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def moment(value: datetime, language: str, timezone: str | None) -> str:
    """A point in time as the reader reads it: their zone, their language's long form (with the zone)."""
    return format_datetime(value, format="long", tzinfo=zone(timezone), locale=language_of(language))
