"""The one time source; tests travel in time through it (time-machine patches what it reads)."""
from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso_z(value: datetime) -> str:
    """The contract's timestamp form: ISO 8601 in UTC, milliseconds, with a Z."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
