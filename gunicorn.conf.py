"""gunicorn settings: gthread workers (WebSocket connections each hold a thread), sizes from the environment."""
import multiprocessing
import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# Measured (make bench, 2 cores): more threads add no throughput under the GIL, only tail latency.
threads = int(os.environ.get("WEB_THREADS", "2"))
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


def post_fork(server, worker):
    # Objects built at import time live for the whole process: keep them out of every collection,
    # and collect the young generation less often (each request allocates many short-lived objects).
    import gc

    gc.freeze()
    gc.set_threshold(20000, 50, 100)
