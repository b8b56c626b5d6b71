"""Browser and operating system of a User-Agent header, for people to read ("Firefox on Linux").

Parsed with ua-parser (the uap-core rules, maintained upstream) rather than a table of our own;
the results of recent headers are cached, as one account's timeline repeats a few of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ua_parser import parse


@dataclass(frozen=True)
class Software:
    browser: str | None
    os: str | None


@lru_cache(maxsize=2048)
def describe(user_agent: str | None) -> Software:
    """The browser (or app) family and the OS family; None for what the header does not tell."""
    if not user_agent:
        return Software(None, None)
    result = parse(user_agent[:512])
    browser = result.user_agent.family if result.user_agent and result.user_agent.family != "Other" else None
    system = result.os.family if result.os and result.os.family != "Other" else None
    return Software(browser, system)
