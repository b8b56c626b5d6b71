"""Housekeeping: what expires is deleted, in one pass the outbox worker runs every few minutes
(and `flask idempotency purge` runs by hand)."""
from __future__ import annotations

from datetime import datetime

from gatehouse.services import idempotency, link_tokens, security_events, throttle


def run(now: datetime) -> dict[str, int]:
    """Expired Idempotency-Key responses, stale sign-in counters, link tokens past their days, and
    security events older than SECURITY_EVENTS_DAYS. How many rows of each went."""
    return {"idempotency_keys": idempotency.purge(now), "sign_in_counters": throttle.purge(now),
            "link_tokens": link_tokens.purge(now), "security_events": security_events.purge(now)}


def said(removed: dict[str, int]) -> str:
    return ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in removed.items())
