"""Run requests from several threads at once, released together by a barrier."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable


def each_at_once(app, items: Iterable, request: Callable) -> list:
    """`request(client, item)` for every item, each from its own thread with its own test client, all
    started together; the results in the order of `items`."""
    items = list(items)
    barrier = threading.Barrier(len(items))

    def run(item):
        client = app.test_client()
        barrier.wait(timeout=30)
        return request(client, item)

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(run, items))


def at_once(app, count: int, request: Callable) -> list:
    """`request(client)` from `count` threads, each with its own test client, all started together."""
    return each_at_once(app, range(count), lambda client, _: request(client))
