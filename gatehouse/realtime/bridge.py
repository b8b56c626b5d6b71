"""How bus events reach connections: directly in this process, or through one Redis pub/sub channel
so that an event published by any process reaches sockets held by every process."""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

CHANNEL = "gatehouse:events"
Deliver = Callable[[str, str, dict], None]


class LocalBridge:
    """REDIS_URL unset: one process, events go straight to its connections."""

    def __init__(self, deliver: Deliver):
        self._deliver = deliver

    def forward(self, target: str, event: str, data: dict) -> None:
        self._deliver(target, event, data)

    def ensure_listening(self) -> None:
        pass


class RedisBridge:
    """Publishing only queues the event (a request never waits on Redis); a publisher thread sends it.
    A listener thread, started with the first connection, delivers the channel's events here and
    reconnects after Redis restarts (events published while Redis is down are lost; connections
    still re-check their session, so a revocation is never lost for long)."""

    IDLE_EXIT_SECONDS = 5
    RETRY_SECONDS = (0.1, 0.5, 1, 2, 5)

    def __init__(self, client, deliver: Deliver):
        self._client = client
        self._deliver = deliver
        self._outgoing: queue.Queue[str] = queue.Queue(maxsize=10_000)
        self._lock = threading.Lock()
        self._publisher: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._subscribed = threading.Event()

    def forward(self, target: str, event: str, data: dict) -> None:
        try:
            self._outgoing.put_nowait(json.dumps({"target": target, "event": event, "data": data}))
        except queue.Full:
            log.warning("realtime event dropped: publish queue full", extra={"event": event})
            return
        with self._lock:
            if self._publisher is None or not self._publisher.is_alive():
                self._publisher = threading.Thread(target=self._publish_loop, name="gatehouse-bus-publish",
                                                   daemon=True)
                self._publisher.start()

    def _publish_loop(self) -> None:
        while True:
            try:
                message = self._outgoing.get(timeout=self.IDLE_EXIT_SECONDS)
            except queue.Empty:
                with self._lock:  # exit only if nothing arrived meanwhile; forward() restarts us
                    if self._outgoing.empty():
                        self._publisher = None
                        return
                continue
            for attempt, pause in enumerate((0, *self.RETRY_SECONDS[:2])):
                time.sleep(pause)
                try:
                    self._client.publish(CHANNEL, message)
                    break
                except Exception as exc:
                    if attempt == 2:
                        log.warning("realtime event lost: Redis publish failed",
                                    extra={"error_type": type(exc).__name__})

    def ensure_listening(self, wait: float = 2.0) -> None:
        """Start the listener once per process, and give it a moment to subscribe."""
        with self._lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen_loop, name="gatehouse-bus-listen",
                                                  daemon=True)
                self._listener.start()
        self._subscribed.wait(wait)

    def _listen_loop(self) -> None:
        failures = 0
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(CHANNEL)
                self._subscribed.set()
                failures = 0
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._receive(message["data"])
            except Exception as exc:  # Redis down or restarting: retry with backoff, forever
                self._subscribed.clear()
                log.warning("realtime listener lost Redis; reconnecting", extra={"error_type": type(exc).__name__})
                time.sleep(self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS) - 1)])
                failures += 1
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _receive(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            self._deliver(message["target"], message["event"], message["data"])
        except Exception as exc:  # one bad message must not stop the listener
            log.warning("realtime message not delivered", extra={"error_type": type(exc).__name__})
