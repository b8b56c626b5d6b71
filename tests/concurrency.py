"""Run the same request from several threads at once, released together by a barrier."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


def at_once(app, count: int, request) -> list:
    """`request(client)` from `count` threads, each with its own test client, all started together."""
    barrier = threading.Barrier(count)

    def run(_):
        client = app.test_client()
        barrier.wait(timeout=30)
        return request(client)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))
