"""gunicorn settings: gthread workers, sizes from the environment; WebSockets and plain HTTP get their own threads."""
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# Measured (make bench, 2 cores): more than 2 plain-HTTP requests at once per process add no
# throughput under the GIL, only tail latency. A WebSocket holds its thread for its whole life, so
# each process gets one thread per allowed socket on top (the app refuses the upgrade beyond
# WS_CONNECTIONS), and HTTP requests take one of WEB_THREADS slots in pre_request below.
http_slots = int(os.environ.get("WEB_THREADS", "2"))
threads = http_slots + int(os.environ.get("WS_CONNECTIONS", "64"))
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


def _close_websockets(worker):
    """A WebSocket would hold its thread, and so the worker's exit, until the client left."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    if "gatehouse.realtime" in extensions:
        extensions["gatehouse.realtime"].registry.close_all()


def worker_int(worker):  # SIGINT / SIGQUIT: quick shutdown
    _close_websockets(worker)


def post_fork(server, worker):
    worker.http_slots = FairSlots(http_slots)
    graceful_exit = worker.handle_exit  # SIGTERM: close the sockets as well, then drain HTTP

    def handle_exit(sig, frame):
        graceful_exit(sig, frame)
        _close_websockets(worker)

    worker.handle_exit = handle_exit

    # Objects built at import time live for the whole process: keep them out of every collection,
    # and collect the young generation less often (each request allocates many short-lived objects).
    import gc

    gc.freeze()
    gc.set_threshold(20000, 50, 100)


def on_starting(server):
    """A development configuration that listens beyond loopback is warned about in the log."""
    from pathlib import Path

    from dotenv import dotenv_values

    from gatehouse.config import exposed_development_warning

    app_env = os.environ.get("APP_ENV") or dotenv_values(Path(__file__).with_name(".env")).get("APP_ENV")
    warning = exposed_development_warning(app_env, bind.rsplit(":", 1)[0])
    if warning:
        server.log.warning(warning)
