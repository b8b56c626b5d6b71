"""Idle WebSockets are cheap, shares are fair, and a deploy says goodbye (CONTRACT §6), against a real
gunicorn: a user's 17th socket on an instance is refused with 429 while others connect; hundreds of
idle sockets on one process leave every HTTP request and every event whole; SIGTERM closes every
socket with 1001 and tells the client to come back after a random delay. No test here times
anything: each waits (bounded) for what must arrive."""
from __future__ import annotations

import signal
import socket
import time

import pytest

from bench.swarm import Swarm
from tests.live_server import UPGRADE, WAIT

pytestmark = pytest.mark.slow

PER_USER = 16
# The server's ping interval, and so the time a socket has to answer each ping (or it is closed with
# 1008): long enough for this test's own client, 300 sockets in one thread of a loaded machine.
PING_SECONDS = 5


def upgrade(server, token: str) -> tuple[int, socket.socket]:
    """The status of an upgrade on a raw socket, and the socket (held open: after a 101, a connection)."""
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    lines = ["GET /ws HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Authorization: Bearer {token}",
             *(f"{k}: {v}" for k, v in UPGRADE.items())]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return int(conn.recv(1024).split(b" ", 2)[1]), conn


def closed(swarm: Swarm) -> str:
    """Which sockets the server closed, each with its close codes (1008: a ping left unanswered)."""
    ended = [f"#{n} of user {peer.user}: {peer.closes}" for n, peer in enumerate(swarm.peers) if peer.closes]
    return f"{len(ended)} of {len(swarm.peers)} sockets closed" + (": " + ", ".join(ended) if ended else "")


def test_a_users_17th_socket_on_the_instance_is_429_while_another_user_connects(serve):
    server = serve(processes=2)
    token = server.register()["tokens"]["accessToken"]
    held = [server.connect(token=token) for _ in range(PER_USER)]
    assert len({server.holder_of(sock.local_port) for sock in held}) == 2  # both processes counted

    refused = server.handshake(Authorization=f"Bearer {token}")  # the 17th, before any WebSocket
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0 and "Sec-WebSocket-Accept" not in refused.headers

    other = server.connect(token=server.register()["tokens"]["accessToken"])  # another user is unaffected

    held.pop().close()  # one of the 16 ends: its seat comes back once the server has seen the close
    deadline = time.monotonic() + WAIT
    while True:
        status, again = upgrade(server, token)
        if status == 101:
            break
        again.close()
        assert status == 429 and time.monotonic() < deadline, "the closed socket's seat never came back"
        time.sleep(0.05)
    status, extra = upgrade(server, token)
    assert status == 429  # and only one
    for conn in (again, extra):
        conn.close()
    for sock in held + [other]:
        sock.close()


def test_hundreds_of_idle_sockets_on_one_process_leave_every_request_and_event_whole(serve):
    server = serve(processes=1, WS_PING_SECONDS=PING_SECONDS)
    users = [server.register() for _ in range(20)]
    swarm = Swarm(server.port, reconnect=False)
    try:
        swarm.open([(user["tokens"]["accessToken"], n) for n, user in enumerate(users) for _ in range(15)])
        assert swarm.open_count() == 300
        deadline = time.monotonic() + 10 * WAIT
        # Every socket pinged twice meanwhile: the second ping goes out only if the first was answered.
        while unpinged := sum(1 for peer in swarm.peers if peer.pings < 2):
            assert not any(peer.closes for peer in swarm.peers), closed(swarm)
            for user in users:
                assert server.call("GET", "/auth/me", user["tokens"]["accessToken"]).status_code == 200
            assert time.monotonic() < deadline, f"{unpinged} sockets were never pinged twice; {closed(swarm)}"
        versions = {}
        for n, user in enumerate(users):
            response = server.call("PATCH", "/users/me", user["tokens"]["accessToken"],
                                   json={"displayName": f"Idle {n}"})
            assert response.status_code == 200
            versions[n] = response.json()["user"]["version"]
        deadline = time.monotonic() + WAIT
        while missing := [peer for peer in swarm.peers if versions[peer.user] not in peer.versions]:
            assert time.monotonic() < deadline, (f"{len(missing)} sockets never got their entity:updated; "
                                                 f"{closed(swarm)}")
            time.sleep(0.05)
        assert all(not peer.closes for peer in swarm.peers), closed(swarm)  # none was dropped
    finally:
        swarm.close()


def test_sigterm_closes_every_socket_with_1001_and_asks_for_a_jittered_reconnect(serve):
    server = serve(processes=2)
    token = server.register()["tokens"]["accessToken"]
    sockets = [server.connect(token=token) for _ in range(6)]
    assert len({server.holder_of(sock.local_port) for sock in sockets}) == 2
    server.process.send_signal(signal.SIGTERM)  # a deploy
    for sock in sockets:
        assert sock.closed_with() == 1001
        assert "reconnect after a random delay" in sock.ws.close_message
    server.process.wait(WAIT)
