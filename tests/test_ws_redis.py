"""With REDIS_URL, an event published by any process reaches sockets held by every process (CONTRACT §6),
and the fan-out survives a Redis restart."""
from __future__ import annotations

import time

import pytest

from tests.conftest import REDIS_BIN
from tests.servers import Redis

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def postgres_leg_only(leg):
    if leg != "postgres":
        pytest.skip("cross-process fan-out needs Redis: the postgres+redis leg")


def test_an_event_from_one_instance_reaches_sockets_held_by_another(serve):
    # Two instances of one deployment on one database and Redis: one public URL, so one token issuer.
    public = {"PUBLIC_URL": "http://gatehouse.test"}
    holder, writer = serve(processes=2, **public), serve(processes=2, **public)
    auth = holder.register()
    token = auth["tokens"]["accessToken"]
    sockets = [holder.connect(token=token) for _ in range(4)]  # spread over the holder's two processes
    response = writer.call("PATCH", "/users/me", token, json={"displayName": "Elsewhere"})
    assert response.status_code == 200
    for sock in sockets:
        assert sock.next_event("entity:updated")["fields"] == ["displayName"]
    assert writer.call("POST", "/auth/logout", token, json={}).status_code == 204
    for sock in sockets:
        assert sock.next_event("session:revoked") == {}
        assert sock.closed_with() == 4401


def test_fan_out_resumes_after_redis_restarts(serve, make_config):
    redis = Redis(REDIS_BIN)
    redis.start()
    try:
        server = serve(REDIS_URL=redis.url())
        auth = server.register()
        token = auth["tokens"]["accessToken"]
        sock = server.connect(token=token)
        port = redis.port
        redis.stop()
        # While Redis is down, requests still succeed (the event is lost, never the write).
        assert server.call("PATCH", "/users/me", token, json={"displayName": "Offline"}).status_code == 200
        redis = Redis(REDIS_BIN)
        redis.port = port
        redis.start()
        deadline = time.monotonic() + 15
        while True:  # the listener reconnects with backoff; publish until an event gets through
            assert server.call("PATCH", "/users/me", token, json={"displayName": f"Back {time.monotonic()}"}
                               ).status_code == 200
            try:
                assert sock.next_event("entity:updated", timeout=1)["fields"] == ["displayName"]
                break
            except AssertionError:
                assert time.monotonic() < deadline, "fan-out did not resume after Redis came back"
        sock.close()
    finally:
        redis.stop()
