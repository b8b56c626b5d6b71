"""CONTRACT §1 "one behaviour, any shape": with two gunicorn processes and no REDIS_URL (the SQLite
leg) the auth bucket counts once per address, every event reaches every connection of the user on
either process, and presence is one roster. The PostgreSQL leg runs the same tests through Redis."""
from __future__ import annotations

import http.client
import json
import time

import pytest
from sqlalchemy import select, update

from gatehouse.extensions import db
from gatehouse.models import PresenceConnection, RateLimitWindow, User
from tests.live_server import WAIT

pytestmark = pytest.mark.slow


def spread(open_one, holder_of, at_most: int = 16) -> dict[int, object]:
    """Open connections until two worker processes each hold one; {worker pid: connection}.
    How many were opened on the way is left in spread.opened."""
    held: dict[int, object] = {}
    for spread.opened in range(1, at_most + 1):
        conn, port = open_one()
        pid = holder_of(port)
        if pid in held:
            conn.close()
        else:
            held[pid] = conn
        if len(held) == 2:
            return held
    raise AssertionError("the connections did not spread over two processes")


def pinned_http(server):
    def open_one():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() is not None
        return conn, conn.sock.getsockname()[1]

    return spread(open_one, server.holder_of)


def login(conn, n: int):
    conn.request("POST", "/auth/login", json.dumps({"email": f"nobody{n}@example.com", "password": "wrong one"}),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), json.loads(response.read())


def test_the_11th_auth_request_from_one_address_is_429_whichever_process_counts(serve, app, leg):
    server = serve(processes=2, RATELIMIT_ENABLED="1")
    first, second = pinned_http(server).values()
    try:
        limited_across_processes(app, leg, first, second)
    finally:
        first.close()
        second.close()


def limited_across_processes(app, leg, first, second):
    answers = [login((first, second)[n % 2], n) for n in range(10)]  # five on each process
    assert [status for status, _, _ in answers] == [401] * 10
    for conn in (first, second):  # the 11th and 12th, one on each process
        status, headers, body = login(conn, 99)
        assert (status, body["code"]) == (429, "rate_limited")
        assert 1 <= int(headers["Retry-After"]) <= 60
    if leg == "sqlite":  # one window in the shared database, holding the ten granted hits
        with app.app_context():
            (window,) = db.session.scalars(select(RateLimitWindow)).all()
            assert len(window.hits) == 10 and "127.0.0.1" in window.key


def sockets_on_both_processes(server, token):
    def open_one():
        sock = server.connect(token=token)
        return sock, sock.local_port

    return spread(open_one, server.holder_of)


def test_events_reach_the_sockets_of_each_process(serve):
    server = serve(processes=2)
    token = server.register()["tokens"]["accessToken"]
    held = sockets_on_both_processes(server, token)
    for n in range(2):  # a change made by either process reaches both
        assert server.call("PATCH", "/users/me", token, json={"displayName": f"Change {n}"}).status_code == 200
        for sock in held.values():
            assert sock.next_event("entity:updated")["fields"] == ["displayName"]
    assert server.call("POST", "/auth/logout", token, json={}).status_code == 204
    for sock in held.values():
        assert sock.next_event("session:revoked") == {}
        assert sock.closed_with() == 4401


def roster_size(app, leg, user_id, redis_url) -> int:
    if leg == "sqlite":
        with app.app_context():
            return len(db.session.scalars(select(PresenceConnection.id)
                                          .where(PresenceConnection.user_id == user_id)).all())
    import redis

    return redis.Redis.from_url(redis_url).zcard(f"gatehouse:presence:{user_id}")


def test_presence_of_a_user_on_both_processes_is_one_roster(serve, app, leg, make_config):
    server = serve(processes=2)
    admin, member = server.register(), server.register()
    with app.app_context():
        db.session.execute(update(User).where(User.id == admin["user"]["id"]).values(role="admin"))
        db.session.commit()
    watcher = server.connect(token=admin["tokens"]["accessToken"])
    member_id = member["user"]["id"]
    first, second = sockets_on_both_processes(server, member["tokens"]["accessToken"]).values()
    redis_url = make_config().get("REDIS_URL")
    assert roster_size(app, leg, member_id, redis_url) == 2
    announced = []  # one announcement per opened socket; closing the spares announced nothing
    while len(announced) < spread.opened:
        if (data := watcher.next_event("presence:updated"))["userId"] == member_id:
            announced.append(data["status"])
    assert "offline" not in announced

    first.close()  # one process lets go; the other still holds the user
    deadline = time.monotonic() + WAIT
    while roster_size(app, leg, member_id, redis_url) != 1:
        assert time.monotonic() < deadline, "the closed connection never left the roster"
        time.sleep(0.05)
    second.send("presence:active")  # the next announcement: active, and no offline before it
    while (data := watcher.next_event("presence:updated"))["userId"] != member_id:
        pass
    assert data["status"] == "active"

    second.close()  # the last connection anywhere: now the user is offline
    while (data := watcher.next_event("presence:updated"))["userId"] != member_id:
        pass
    assert data["status"] == "offline"
    assert roster_size(app, leg, member_id, redis_url) == 0
    watcher.close()


# ---- the database storage itself, on both databases (no Redis) ---------------------------------------

@pytest.mark.parametrize("count", [9, 10, 11, 14])
def test_concurrent_auth_requests_without_redis_are_counted_exactly(make_app, count):
    from tests.concurrency import at_once

    app = make_app(RATELIMIT_ENABLED="1", REDIS_URL="")
    statuses = at_once(app, count, lambda client: client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": "not the password"}).status_code)
    assert sorted(statuses) == [401] * min(count, 10) + [429] * max(0, count - 10)
    with app.app_context():
        (window,) = db.session.scalars(select(RateLimitWindow)).all()
        assert len(window.hits) == min(count, 10)
        db.session.remove()


def test_a_window_frees_its_slots_as_its_hits_lapse(make_app):
    import time_machine

    app = make_app(RATELIMIT_ENABLED="1", REDIS_URL="")
    client = app.test_client()
    body = {"email": "nobody@example.com", "password": "not the password"}
    with time_machine.travel(0, tick=False) as traveller:
        for second in range(10):
            traveller.move_to(second)
            assert client.post("/auth/login", json=body).status_code == 401
        assert client.post("/auth/login", json=body).status_code == 429
        traveller.move_to(60.5)  # the first hit (at 0 s) has lapsed: one slot, then full again
        assert client.post("/auth/login", json=body).status_code == 401
        assert client.post("/auth/login", json=body).status_code == 429
