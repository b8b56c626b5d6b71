"""gunicorn settings: gthread workers, sizes from the environment. Plain HTTP gets its own threads;
a WebSocket's upgrade runs on a thread of gunicorn's, then the socket moves to its process's loop
(gatehouse.realtime.loop) and the thread goes back to work."""
import collections
import errno
import multiprocessing
import os
import resource
import selectors
import socket
import threading
import time
from concurrent import futures
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# Measured (make bench, 2 cores): more than 2 plain-HTTP requests at once per process add no
# throughput under the GIL, only tail latency; HTTP requests take one of WEB_THREADS slots in
# pre_request below. WebSocket upgrades do not: they hold a thread for the milliseconds of the
# handshake, and the threads are split into lanes (Lanes below) so that a reconnect storm's
# thousands of upgrades never queue in front of the HTTP requests.
http_slots = int(os.environ.get("WEB_THREADS", "2"))
HANDSHAKE_THREADS = 4
threads = http_slots + HANDSHAKE_THREADS
# A reconnect storm opens thousands of connections in a second; the kernel caps this at somaxconn.
backlog = 4096


def _open_files() -> tuple[int, int]:
    """Every WebSocket is an open file: the soft limit goes up to the hard one (inherited by the workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


_open_files()
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# The application logs one JSON line per request (without the query string); gunicorn's own
# access log would repeat it, so only errors come from gunicorn.
accesslog = None
errorlog = "-"
# One process's mail thread is enough; the Procfile's worker delivers in production.
forwarded_allow_ips = "*" if int(os.environ.get("TRUSTED_PROXIES", "0") or 0) > 0 else "127.0.0.1"
# No shared control socket under $HOME: several instances run side by side on one machine.
control_socket_disable = True
# A listening socket per worker, so the kernel spreads keep-alive clients over the workers
# (with one shared socket a single worker could take every connection of a burst).
reuse_port = True


def _problem_error(sock, status_int, reason, mesg):
    """gunicorn's own refusals (414 request line too long, 431 headers too large, 400 malformed) as
    RFC 9457 problem+json like every other answer; the message is left out: it may quote the request."""
    import json

    from gunicorn.util import write_nonblock

    code = "internal_error" if status_int >= 500 else "bad_request"
    body = json.dumps({"type": f"urn:gatehouse:problem:{code}", "title": reason, "status": status_int,
                       "detail": f"{reason}.", "code": code}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    write_nonblock(sock, head.encode("latin-1") + body)


def _install_problem_errors():
    from gunicorn import util

    util.write_error = _problem_error


_install_problem_errors()


class FairSlots:
    """A semaphore that hands a freed slot to the longest waiter: no request overtakes one already
    waiting (threading.Semaphore lets newcomers barge, which measured p99 /auth/me at 31-36 ms)."""

    def __init__(self, count: int):
        import collections
        import threading

        self._free = count
        self._lock = threading.Lock()
        self._waiters = collections.deque()
        self._new_waiter = threading.Lock

    def acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            waiter = self._new_waiter()
            waiter.acquire()
            self._waiters.append(waiter)
        waiter.acquire()  # until release() hands this waiter the slot

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


def _is_websocket(req) -> bool:
    return any(name == "UPGRADE" and value.lower() == "websocket" for name, value in req.headers)


def pre_request(worker, req):
    if not _is_websocket(req):
        worker.http_slots.acquire()
        req.holds_http_slot = True


def post_request(worker, req, environ, resp):
    if getattr(req, "holds_http_slot", False):
        req.holds_http_slot = False
        worker.http_slots.release()


def _hub(worker):
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    return extensions.get("gatehouse.realtime")


class Lanes:
    """The worker's thread pool, with two queues: plain HTTP requests, and WebSocket upgrades.
    WEB_THREADS threads take HTTP first, HANDSHAKE_THREADS threads upgrades first, and each takes the
    other queue's work when its own is empty: neither starves. With one FIFO queue, a reconnect storm
    put 2,500 upgrades per process in front of every HTTP request (make bench measured GET /auth/me
    p99 at 15-25 s for the whole storm); with the queues split by connection age instead (kept-alive
    first), the HTTP of clients that reconnect in the same deploy (a router's new connections) still
    waited behind the upgrades."""

    def __init__(self, http_threads: int, upgrade_threads: int):
        self._ready = threading.Condition()
        self._http = collections.deque()
        self._upgrades = collections.deque()
        self._stopping = False
        order = [(self._http, self._upgrades)] * http_threads + [(self._upgrades, self._http)] * upgrade_threads
        for lanes in order:
            threading.Thread(target=self._work, args=lanes, daemon=True).start()

    def submit(self, fn, *args, upgrade: bool = False) -> futures.Future:
        future = futures.Future()
        with self._ready:
            (self._upgrades if upgrade else self._http).append((future, fn, args))
            self._ready.notify()
        return future

    def _work(self, first, second) -> None:
        while True:
            with self._ready:
                while not (first or second or self._stopping):
                    self._ready.wait()
                if self._stopping:
                    return
                future, fn, args = (first or second).popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # as concurrent.futures does: the caller sees it
                    future.set_exception(exc)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()


ACCEPT_BURST = 64
# A new connection may take this long to send its request. gthread's keepalive (5 s) closed the
# connections of a reconnect storm that were still waiting for the main thread to look at them.
PENDING_SECONDS = 30


def _has_data(sock) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False


def _is_upgrade(sock) -> bool:
    """Whether the request waiting on `sock` asks for a WebSocket, read without consuming it. Headers
    not all in the first segment count as plain HTTP: that lane serves upgrades as well."""
    try:
        head = sock.recv(8192, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    head = head.split(b"\r\n\r\n", 1)[0].lower()
    return b"\r\nupgrade:" in head and b"websocket" in head


class Worker(ThreadWorker):
    """gthread, and the WebSockets its process holds: on SIGTERM (a deploy, a HUP reload) the worker
    first stops listening, then closes every socket with 1001; the clients reconnecting at once
    land on the processes that still listen. It exits once they have gone (or CLOSE_WAIT later)."""

    drain_seconds = 6.0

    def get_thread_pool(self):
        return Lanes(http_slots, HANDSHAKE_THREADS)

    def accept(self, listener):
        """As gthread's, but the request of a new connection is first put in its lane (Lanes), and a
        burst is accepted in one go: in a reconnect storm the main thread, which competes for the GIL
        with every other thread, was the bottleneck when it took one connection per poller event."""
        if not self.alive:  # a stopping worker's listener is shut: nothing to accept there
            return
        for _ in range(ACCEPT_BURST):
            if self.nr_conns >= self.worker_connections:
                return
            try:
                client, address = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    return
                raise
            self.nr_conns += 1
            conn = TConn(self.cfg, client, address, listener.getsockname())
            if _has_data(conn.sock):
                conn.data_ready = True
                self.enqueue_req(conn)
            else:  # no request yet: it waits in the poller (gthread's path for a slow client)
                conn.timeout = time.monotonic() + PENDING_SECONDS
                self.pending_conns.append(conn)
                self.poller.register(conn.sock, selectors.EVENT_READ,
                                     partial(self.on_pending_socket_readable, conn))

    def enqueue_req(self, conn):
        fs = self.tpool.submit(self.handle, conn, upgrade=not self.cfg.is_ssl and _is_upgrade(conn.sock))
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        self._stop_listening()
        hub = _hub(self)
        if hub is not None:
            hub.go_away()

    def handle_quit(self, sig, frame):  # SIGINT / SIGQUIT: quick; worker_int closes the sockets
        self.drain_seconds = 1.0
        super().handle_quit(sig, frame)

    def _stop_listening(self):
        """With reuse_port the listening socket is this worker's own: shutting it takes it out of the
        kernel's group at once, so no new connection is queued on a worker that no longer accepts (it
        would be reset when the worker exits). A shared listener (reuse_port off) stays open for the others."""
        if not self.cfg.reuse_port:
            return
        self.set_accept_enabled(False)
        for listener in self.sockets:
            try:
                listener.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def run(self):
        try:
            super().run()
        finally:
            hub = _hub(self)
            if hub is not None:
                hub.drain(self.drain_seconds)


worker_class = Worker


def worker_int(worker):  # SIGINT / SIGQUIT: quick shutdown
    hub = _hub(worker)
    if hub is not None:
        hub.go_away()


def _metrics_directory(server):
    """Prometheus multiprocess mode: each worker writes its samples under PROMETHEUS_MULTIPROC_DIR and
    any worker's /metrics sums them. A directory of our own unless the operator names one; either
    way emptied first, as samples of an earlier run would be added to this one's."""
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    else:
        # Set before any worker imports prometheus_client, which reads it at import.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = server.metrics_dir = tempfile.mkdtemp(prefix="gatehouse-metrics-")


def _instance_directory(server):
    """Where the workers of this instance share their WebSocket seats (gatehouse/realtime/seats.py):
    a directory of this master's own, owner-only, removed at exit."""
    import tempfile

    os.environ["GATEHOUSE_INSTANCE_DIR"] = server.instance_dir = tempfile.mkdtemp(prefix="gatehouse-instance-")


def child_exit(server, worker):
    import sqlite3

    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # its live gauges (connections, hashes in flight) end with it
    seats = os.path.join(os.environ.get("GATEHOUSE_INSTANCE_DIR", ""), "ws-seats.sqlite")
    if os.path.exists(seats):  # seats a crashed worker never gave back (gatehouse.realtime.seats.SharedSeats)
        db = sqlite3.connect(seats, timeout=10, isolation_level=None)
        try:
            db.execute("DELETE FROM seats WHERE pid = ?", (worker.pid,))
        except sqlite3.Error as exc:
            server.log.warning("WebSocket seats of worker %s not freed: %s", worker.pid, exc)
        finally:
            db.close()


def on_exit(server):
    import shutil

    for path in (getattr(server, "metrics_dir", None), getattr(server, "instance_dir", None)):
        if path:
            shutil.rmtree(path, ignore_errors=True)


def post_fork(server, worker):
    worker.http_slots = FairSlots(http_slots)

    # Objects built at import time live for the whole process: keep them out of every collection,
    # and collect the young generation less often (each request allocates many short-lived objects).
    import gc

    gc.freeze()
    gc.set_threshold(20000, 50, 100)


def on_starting(server):
    """The metrics directory first (importing gatehouse below loads prometheus_client, which reads
    PROMETHEUS_MULTIPROC_DIR once); then a development configuration that listens beyond loopback
    is warned about in the log."""
    _metrics_directory(server)
    _instance_directory(server)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ws_connections = int(os.environ.get("WS_CONNECTIONS", "5000") or 5000)
    server.log.info("open files per process: %s (hard limit %s); WS_CONNECTIONS %s per process", soft, hard,
                    ws_connections)
    if soft < ws_connections + 256:
        server.log.warning("each WebSocket is an open file, and a process may open only %s: raise the hard "
                           "limit (ulimit -Hn) or lower WS_CONNECTIONS (%s)", soft, ws_connections)
    from pathlib import Path

    from dotenv import dotenv_values

    from gatehouse.config import exposed_development_warning

    app_env = os.environ.get("APP_ENV") or dotenv_values(Path(__file__).with_name(".env")).get("APP_ENV")
    warning = exposed_development_warning(app_env, bind.rsplit(":", 1)[0])
    if warning:
        server.log.warning(warning)
