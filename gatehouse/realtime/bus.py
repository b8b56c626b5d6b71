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
