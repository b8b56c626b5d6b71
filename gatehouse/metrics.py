"""Prometheus metrics (CONTRACT §1): the metric objects, and the text every scrape answers.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set up and cleaned by gunicorn.conf.py's hooks) makes
every process write its samples to files there, and a scrape of any process sums them all. Without
it (one process: `flask run`, tests) the samples stay in this process's memory.

Labels only ever hold words of a fixed vocabulary (an outcome, a bucket, a URL rule, an event
name), never a user id, address, email or token: each label value is a time series kept forever.
"""
from __future__ import annotations

import os
from datetime import datetime

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.engine import Engine

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

http_request_duration = Histogram(
    "gatehouse_http_request_duration_seconds", "Time to answer an HTTP request, by URL rule and status class.",
    ["route", "status"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
signins = Counter("gatehouse_signins_total", "Password sign-ins, by outcome.", ["outcome"])
refreshes = Counter("gatehouse_refreshes_total", "Refresh-token rotations, by outcome.", ["outcome"])
rate_limited = Counter("gatehouse_rate_limited_total", "Requests refused by a rate limit, by bucket.", ["bucket"])
argon2_in_flight = Gauge("gatehouse_argon2_in_flight", "argon2 computations running now.",
                         multiprocess_mode="livesum")
argon2_waiting = Gauge("gatehouse_argon2_waiting", "Requests waiting for an argon2 slot now.",
                       multiprocess_mode="livesum")
argon2_wait = Histogram("gatehouse_argon2_wait_seconds", "Time a request waited for an argon2 slot.",
                        buckets=(.001, .01, .05, .1, .25, .5, 1, 2, 5))
argon2_refused = Counter("gatehouse_argon2_refused_total",
                         "Requests refused (503) after waiting HASH_QUEUE_TIMEOUT_MS for an argon2 slot.")
mail_sent = Counter("gatehouse_mail_sent_total", "Outbox delivery attempts, by outcome.", ["outcome"])
ws_connections = Gauge("gatehouse_ws_connections", "WebSocket connections held open.", multiprocess_mode="livesum")
ws_events = Counter("gatehouse_ws_events_total", "Events delivered to WebSocket connections, by event.", ["event"])
database_errors = Counter("gatehouse_database_errors_total", "Errors raised by the database driver, by kind.",
                          ["kind"])


def status_class(status: int) -> str:
    return f"{status // 100}xx"


@event.listens_for(Engine, "handle_error")
def _count_database_error(context) -> None:
    # SQLAlchemy's own class (OperationalError, IntegrityError, ...): the same word on every database.
    kind = type(context.sqlalchemy_exception).__name__ if context.sqlalchemy_exception else "DBAPIError"
    database_errors.labels(kind).inc()


class _Outbox:
    """The outbox figures, read from the database at scrape time: one indexed aggregate query."""

    def __init__(self, now: datetime):
        self.now = now

    def collect(self):
        from gatehouse.outbox.worker import due_summary

        count, oldest = due_summary(self.now)
        yield GaugeMetricFamily("gatehouse_outbox_due", "Mails due for delivery now.", value=count)
        age = (self.now - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("gatehouse_outbox_oldest_due_seconds",
                                "How long the oldest due mail has been waiting (0 when none).", value=max(age, 0.0))


def exposition(now: datetime) -> bytes:
    """The text of one scrape: every process's samples, then the outbox gauges.

    A database that does not answer leaves the outbox gauges out (and counts the error);
    the rest of the scrape still answers.
    """
    from sqlalchemy.exc import SQLAlchemyError

    path = os.environ.get(MULTIPROCESS_DIR)
    if path:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        samples = generate_latest(registry)
    else:
        samples = generate_latest(REGISTRY)
    outbox = CollectorRegistry(auto_describe=False)
    outbox.register(_Outbox(now))
    try:
        return samples + generate_latest(outbox)
    except SQLAlchemyError:
        return samples
