"""publish(user_id, event, data) after a commit; subscribers (WebSocket fan-out, tests) receive it."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from flask import current_app

log = logging.getLogger(__name__)

Subscriber = Callable[[str, str, dict], None]


class EventBus:
    """In-process fan-out. A subscriber's failure never reaches the publisher."""

    def __init__(self):
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe():
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, user_id: str, event: str, data: dict) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(user_id, event, data)
            except Exception as exc:  # a broken listener must not fail the request that changed data
                log.warning("event subscriber failed", extra={"event": event, "error_type": type(exc).__name__})


def bus() -> EventBus:
    return current_app.extensions["gatehouse.bus"]


def publish(user_id: str, event: str, data: dict) -> None:
    bus().publish(user_id, event, data)


# ---- after the commit --------------------------------------------------------------------------

PENDING = "gatehouse.pending_events"


def publish_after_commit(user_id: str, event: str, data: dict) -> None:
    """Publish `event` once the transaction in progress commits; never if it rolls back.

    A use case that writes several rows and then commits once (perhaps inside a helper) announces
    exactly what became true, and a subscriber never hears of a change it cannot read yet.
    """
    from gatehouse.extensions import db

    db.session.info.setdefault(PENDING, []).append((user_id, event, data))


def _publish_pending(session) -> None:
    for user_id, event, data in session.info.pop(PENDING, ()):
        publish(user_id, event, data)


def _forget_pending(session) -> None:
    session.info.pop(PENDING, None)


def install_after_commit(session_factory) -> None:
    """Route publish_after_commit's events: to the bus at a commit, nowhere at a rollback."""
    from sqlalchemy import event as orm_event

    if not orm_event.contains(session_factory, "after_commit", _publish_pending):
        orm_event.listen(session_factory, "after_commit", _publish_pending)
        orm_event.listen(session_factory, "after_rollback", _forget_pending)
