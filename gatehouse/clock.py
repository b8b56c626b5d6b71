"""The one time source; tests travel in time through it (time-machine patches what it reads)."""
from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)
