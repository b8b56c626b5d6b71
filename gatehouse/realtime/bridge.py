"""How bus events reach connections held by every process: through one Redis pub/sub channel when
REDIS_URL is set, else through a Unix datagram socket per process in a directory that the processes
of one instance (the same database, the same machine and user) share."""
from __future__ import annotations

import atexit
import errno
import hashlib
import json
import logging
import os
import queue
import socket
import stat
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

CHANNEL = "gatehouse:events"
Deliver = Callable[[str, str, dict], None]


def sibling_directory(database_uri: str) -> Path:
    """Where the processes that share this database on this machine find each other's sockets."""
    instance = hashlib.sha256(database_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"gatehouse-{os.getuid()}-{instance}"


class SiblingBridge:
    """REDIS_URL unset. An event is delivered here at once and sent as one datagram to each sibling
    process's socket (a send never blocks: a sibling whose queue is full loses that event, as with a
    full Redis publish queue; a socket nobody listens on any more is removed). A process binds its own
    socket with its first WebSocket: before that it holds no connection an event could reach.

    Measured against an events table polled by every process: no database write per change, and an
    event arrives in microseconds instead of at the next poll."""

    RECEIVE_BUFFER = 1 << 20
    MAX_DATAGRAM = 1 << 16

    def __init__(self, directory: Path, deliver: Deliver):
        self._directory = directory
        self._deliver = deliver
        self._name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None

    def forward(self, target: str, event: str, data: dict) -> None:
        self._deliver(target, event, data)
        message = json.dumps({"target": target, "event": event, "data": data}, separators=(",", ":")).encode()
        if len(message) > self.MAX_DATAGRAM:
            log.warning("realtime event not shared: too large", extra={"event": event})
            return
        try:
            siblings = [entry.path for entry in os.scandir(self._directory)
                        if entry.name.endswith(".sock") and entry.name != self._name]
        except FileNotFoundError:  # no process has bound a socket yet: no connection anywhere
            return
        if siblings:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.setblocking(False)
                for path in siblings:
                    self._send(sender, message, path, event)

    def _send(self, sender: socket.socket, message: bytes, path: str, event: str) -> None:
        try:
            sender.sendto(message, path)
        except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
            self._forget(path)
        except BlockingIOError:
            log.warning("realtime event dropped: a sibling process is not keeping up", extra={"event": event})
        except OSError as exc:
            log.warning("realtime event not shared", extra={"event": event, "error_type": type(exc).__name__})

    @staticmethod
    def _forget(path: str) -> None:
        try:
            os.unlink(path)
        except OSError:
            pass

    def _prepared_directory(self) -> bool:
        """The shared directory, owner-only: another user who could write to it could read the events."""
        try:
            self._directory.mkdir(mode=0o700, exist_ok=True)
            info = os.lstat(self._directory)
        except OSError as exc:
            log.error("realtime sibling directory unusable", extra={"error_type": type(exc).__name__})
            return False
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            log.error("realtime sibling directory refused: not an owner-only directory of this user",
                      extra={"path": str(self._directory)})
            return False
        return True

    def ensure_listening(self) -> None:
        with self._lock:
            if self._listener is not None or not self._prepared_directory():
                return
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER)
            path = self._directory / self._name
            receiver.bind(str(path))
            self._listener = threading.Thread(target=self._listen_loop, args=(receiver,),
                                              name="gatehouse-bus-siblings", daemon=True)
            self._listener.start()
            atexit.register(self._forget, str(path))

    def _listen_loop(self, receiver: socket.socket) -> None:
        while True:
            try:
                raw = receiver.recv(self.MAX_DATAGRAM)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                log.error("realtime sibling socket failed", extra={"error_type": type(exc).__name__})
                return
            receive(self._deliver, raw)


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
                        receive(self._deliver, message["data"])
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



def receive(deliver: Deliver, raw: bytes) -> None:
    """One event from another process, to this process's connections."""
    try:
        message = json.loads(raw)
        deliver(message["target"], message["event"], message["data"])
    except Exception as exc:  # one bad message must not stop the listener
        log.warning("realtime message not delivered", extra={"error_type": type(exc).__name__})
