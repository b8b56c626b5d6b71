"""The outbox worker: claim due rows under a lease, send each, retry with back-off, finish each row.

A row is `pending` until claimed, `sending` while a worker holds its lease, and ends `sent`, `failed`
or `expired`; the payload (which may hold a code) is cleared when it ends. A worker that dies
mid-send leaves the row `sending`; once the lease lapses any worker claims it again.
"""
from __future__ import annotations

import json
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case, func, or_, select, update

from gatehouse import metrics
from gatehouse.clock import now as clock_now
from gatehouse.extensions import db
from gatehouse.models import OutboxMessage
from gatehouse.outbox.render import render
from gatehouse.outbox.transport import DeliveryError, Permanent, Transient, open_transport
from gatehouse.runtime import sealer, setting
from gatehouse.web import failure_fields

log = logging.getLogger(__name__)

BATCH_SIZE = 10
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
TERMINAL = {"sent", "failed", "expired"}


@dataclass
class Report:
    """What one delivery pass did, by outcome (sent, retry, failed, expired, released)."""

    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @property
    def handled(self) -> int:
        return sum(self.outcomes.values())

    def __str__(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items())) or "nothing due"


def backoff(attempts: int) -> timedelta:
    """Exponential (30 s, 1 min, 2 min, … capped at 1 h) with equal jitter, so retries of many mails
    after an outage spread out instead of arriving together."""
    ceiling = min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_CAP_SECONDS)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _due(now: datetime):
    return or_(and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
               and_(OutboxMessage.status == "sending", OutboxMessage.lease_until <= now))


def claim(now: datetime, limit: int = BATCH_SIZE) -> list:
    """Take up to `limit` due rows under a lease, in one statement, and commit.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers take disjoint batches without waiting.
    SQLite has one writer at a time, so the UPDATE alone is the single claimer (SQLAlchemy renders
    no FOR UPDATE there). `attempts` grows here, so a send cut short by a crash still counts.
    """
    lease_until = now + timedelta(seconds=setting("OUTBOX_LEASE_SECONDS"))
    due = (select(OutboxMessage.id).where(_due(now)).order_by(OutboxMessage.next_attempt_at)
           .limit(limit).with_for_update(skip_locked=True))
    rows = db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(status="sending", lease_until=lease_until, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage.id, OutboxMessage.template, OutboxMessage.recipient, OutboxMessage.payload,
                   OutboxMessage.attempts, OutboxMessage.expires_at)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return rows


def _finish(row, **values) -> None:
    """Record the outcome, fenced on the claim (status and attempts): a worker whose lease lapsed
    and whose row was claimed again cannot overwrite the newer claim."""
    if values.get("status") in TERMINAL:
        values["payload"] = None
    result = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row.id, OutboxMessage.status == "sending",
               OutboxMessage.attempts == row.attempts)
        .values(lease_until=None, **values)
        .execution_options(synchronize_session=False))
    db.session.commit()
    if result.rowcount == 0:
        log.warning("outbox row was claimed again before it finished", extra={"outbox_id": row.id})


def deliver(row, transport, now: datetime) -> str:
    """Send one claimed row and record what happened; returns the outcome."""
    if row.expires_at is not None and row.expires_at <= now:
        _finish(row, status="expired", last_error="expired before delivery")
        metrics.mail_sent.labels("expired").inc()
        return "expired"
    raw = sealer().open(row.payload) if row.payload is not None else None
    try:
        if raw is None:
            raise Permanent("payload missing or not readable with the current SECRET_KEY")
        try:
            message = render(row.id, row.template, row.recipient, json.loads(raw))
        except Exception as exc:  # a template or context that cannot render never will
            raise Permanent(f"render: {type(exc).__name__}: {exc}") from exc
        transport.send(message)
    except Transient as exc:
        if row.attempts >= setting("OUTBOX_MAX_ATTEMPTS"):
            _finish(row, status="failed", last_error=f"gave up after {row.attempts} attempts: {exc.reason}"[:500])
            outcome = "failed"
        else:
            _finish(row, status="pending", next_attempt_at=now + backoff(row.attempts), last_error=exc.reason)
            outcome = "retry"
    except DeliveryError as exc:
        _finish(row, status="failed", last_error=exc.reason)
        outcome = "failed"
    else:
        _finish(row, status="sent", sent_at=now, last_error=None)
        outcome = "sent"
    log.info("outbox mail %s", outcome, extra={"outbox_id": row.id, "template": row.template,
                                               "attempts": row.attempts})
    metrics.mail_sent.labels(outcome).inc()
    return outcome


def _release(rows) -> None:
    """Hand back claimed rows this pass had no time for, without counting an attempt."""
    for row in rows:
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row.id, OutboxMessage.status == "sending",
                   OutboxMessage.attempts == row.attempts)
            .values(status="pending", lease_until=None, attempts=OutboxMessage.attempts - 1)
            .execution_options(synchronize_session=False))
    db.session.commit()


def deliver_due(now: datetime | None = None) -> Report:
    """Deliver every row due at `now` (default: the clock), batch by batch, and report the outcomes.

    A batch stops taking rows once half of its lease has gone (a stalled SMTP server), and hands the
    rest back, so no row is still being sent when another worker may claim it again.
    """
    report = Report()
    fixed_now = now
    transport = open_transport()
    try:
        while True:
            current = fixed_now or clock_now()
            rows = claim(current)
            started = time.monotonic()
            budget = setting("OUTBOX_LEASE_SECONDS") / 2
            for index, row in enumerate(rows):
                if time.monotonic() - started > budget:
                    _release(rows[index:])
                    report.add("released")
                    break
                report.add(deliver(row, transport, fixed_now or clock_now()))
            if len(rows) < BATCH_SIZE:
                return report
    finally:
        transport.close()


def next_due(now: datetime) -> float | None:
    """Seconds until a row becomes due (0 when one is due now), or None when nothing is waiting."""
    pending = db.session.scalar(select(func.min(OutboxMessage.next_attempt_at))
                                .where(OutboxMessage.status == "pending"))
    leased = db.session.scalar(select(func.min(OutboxMessage.lease_until))
                               .where(OutboxMessage.status == "sending"))
    db.session.commit()
    times = [t for t in (pending, leased) if t is not None]
    if not times:
        return None
    return max((_aware(min(times)) - now).total_seconds(), 0.0)


def due_summary(now: datetime) -> tuple[int, datetime | None]:
    """How many rows are due at `now`, and since when the oldest of them has been (for /metrics):
    one aggregate over the due index. A lapsed lease has been due since it lapsed."""
    due_since = case((OutboxMessage.status == "pending", OutboxMessage.next_attempt_at),
                     else_=OutboxMessage.lease_until)
    count, oldest = db.session.execute(select(func.count(), func.min(due_since)).where(_due(now))).one()
    db.session.commit()
    return count, _aware(oldest) if oldest is not None else None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


PURGE_EVERY = timedelta(minutes=10)


def work(stop: threading.Event | None = None,
         housekeeping: Callable[[datetime], dict[str, int]] | None = None) -> None:
    """The long-running worker: deliver what is due, sleep until the next row is due (at most
    OUTBOX_POLL_SECONDS, since other processes enqueue), until SIGTERM or SIGINT. A failing pass
    (database or SMTP down) is logged and retried; the current batch finishes before exiting.
    `housekeeping` (the caller's purge of what expired) runs every PURGE_EVERY."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    poll = setting("OUTBOX_POLL_SECONDS")
    log.info("outbox worker started")
    purged_at = None
    while not stop.is_set():
        try:
            if housekeeping is not None and (purged_at is None or clock_now() - purged_at >= PURGE_EVERY):
                purged_at = clock_now()
                removed = housekeeping(purged_at)
                if any(removed.values()):
                    log.info("purged", extra=removed)
            report = deliver_due()
            if report.handled:
                log.info("outbox pass: %s", report)
            wait = next_due(clock_now())
        except Exception as exc:
            log.error("outbox delivery pass failed", extra=failure_fields(exc))
            db.session.rollback()
            wait = poll
        finally:
            db.session.remove()
        stop.wait(poll if wait is None else min(max(wait, 0.2), poll))
    log.info("outbox worker stopped")
