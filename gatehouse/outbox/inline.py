"""OUTBOX_INLINE: deliver mail from a background thread of the web process (development, one-box setups).

The thread starts when a transaction that enqueued mail commits, sleeps until the next retry is
due, and ends when nothing is waiting, so an idle process holds no thread. It survives every
delivery error (they are logged), and stops for good when the app's database engine is disposed.
"""
from __future__ import annotations

import logging
import threading

from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from gatehouse.clock import now
from gatehouse.extensions import db
from gatehouse.web import failure_fields

log = logging.getLogger(__name__)

ENQUEUED = "gatehouse.outbox_enqueued"
EXTENSION = "gatehouse.outbox_inline"
ERROR_PAUSE_SECONDS = 5.0


class InlineDelivery:
    def __init__(self, app: Flask):
        self._app = app
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def running(self) -> bool:
        return self._thread is not None

    def wake(self) -> None:
        """Deliver soon: start the thread, or cut its sleep short."""
        with self._lock:
            if self._stopped:
                return
            self._wake.set()
            if self._thread is None:
                with self._app.app_context():
                    engine = db.engine
                if not event.contains(engine, "engine_disposed", self._on_dispose):
                    event.listen(engine, "engine_disposed", self._on_dispose)
                self._thread = threading.Thread(target=self._run, name="gatehouse-outbox-inline", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _on_dispose(self, _engine) -> None:
        self.stop()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    self._thread = None
                    return
                self._wake.clear()
            delay = self._pass()
            with self._lock:
                if self._stopped or (delay is None and not self._wake.is_set()):
                    self._thread = None
                    return
            self._wake.wait(delay or 0)

    def _pass(self) -> float | None:
        """One delivery pass; seconds until the next one is due, None when nothing is waiting."""
        from gatehouse.outbox.worker import deliver_due, next_due

        with self._app.app_context():
            pool = db.engine.pool
            try:
                deliver_due()
                return next_due(now())
            except Exception as exc:  # never let the thread die: the mail stays queued for the next pass
                log.error("inline outbox delivery failed", extra=failure_fields(exc))
                db.session.rollback()
                return ERROR_PAUSE_SECONDS
            finally:
                db.session.remove()
                if db.engine.pool is not pool:
                    # The engine was disposed during this pass (the app is shutting down): close the
                    # connections this pass returned, to the discarded pool or to its replacement,
                    # rather than leave them to the garbage collector.
                    pool.dispose()
                    db.engine.pool.dispose()


def mark_enqueued() -> None:
    """Called by enqueue(): wake the inline deliverer once this transaction commits."""
    db.session.info[ENQUEUED] = True


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(ENQUEUED, False) and has_app_context():
        delivery = current_app.extensions.get(EXTENSION)
        if delivery is not None:
            delivery.wake()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(ENQUEUED, None)
