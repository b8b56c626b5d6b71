"""Gatehouse served by real gunicorn on a free loopback port, and a client for it (HTTP and WebSocket).

The `serve` fixture starts one with the test's settings (tests/conftest.py registers this module).
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from simple_websocket import Client, ConnectionClosed

from tests.actions import PASSWORD
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
WAIT = 10  # seconds any single frame may take to arrive
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}


class _Client(Client):
    """simple-websocket's client leaves a frame that arrived in the same read as the 101 answer in its
    parser until more data comes (a ping, 25 s later): hand it over before the reader thread starts."""

    def handshake(self):
        super().handshake()
        self._handle_events()


class Gatehouse:
    """gunicorn serving wsgi:app on a free loopback port, with the test's settings as its environment."""

    def __init__(self, config: dict, log: Path, processes: int = 1, public_host: str = "127.0.0.1"):
        self.port = free_port()
        # Browsers take no IP address as a passkey's relying-party id: passkey tests browse at localhost.
        self.url = f"http://{public_host}:{self.port}"
        env = {"PATH": os.environ.get("PATH", ""), "PUBLIC_URL": self.url, **config, "HOST": "127.0.0.1",
               "PORT": str(self.port), "WEB_CONCURRENCY": str(processes)}
        self.log = open(log, "w")
        self.process = subprocess.Popen([str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Until /readyz answers 200: a busy machine starts gunicorn slowly, a broken start fails at once."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with status {self.process.returncode} before it was ready")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)  # also after a 503: polling without a pause only slows the start down
        raise RuntimeError("gunicorn did not become ready in 90 s")

    def worker_pids(self) -> set[int]:
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        return {int(pid) for pid in found}

    def holder_of(self, local_port: int) -> int:
        """The pid of the worker process that holds the client connection from `local_port` (read from
        the kernel's socket table, so the application need not say)."""
        out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{self.port} )"],
                             capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if f"127.0.0.1:{local_port} " in line + " ":
                return int(re.search(r"pid=(\d+)", line).group(1))
        raise AssertionError(f"no worker holds the connection from port {local_port}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # quick shutdown: open sockets need no grace
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: workers included
                self.process.wait()
        self.log.close()

    # ---- what a client does ----------------------------------------------------------------------

    def register(self, **fields) -> dict:
        email = fields.pop("email", f"ws{time.monotonic_ns()}@example.com")
        response = requests.post(self.url + "/auth/register", json={"email": email, "password": PASSWORD, **fields},
                                 timeout=WAIT)
        assert response.status_code == 201, response.text
        return response.json()

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=WAIT, **kwargs)

    def handshake(self, path: str = "/ws", **headers) -> requests.Response:
        """A plain HTTP upgrade request: the server's answer before any WebSocket exists."""
        return requests.get(self.url + path, headers={**UPGRADE, **headers}, timeout=WAIT)

    def connect(self, path: str = "/ws", token: str | None = None, headers: dict | None = None) -> "Socket":
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        ws = _Client.connect(f"ws://127.0.0.1:{self.port}{path}", headers=headers)
        return Socket(ws)

    def ticket(self, token: str) -> str:
        response = self.call("POST", "/auth/ws-ticket", token)
        assert response.status_code == 201, response.text
        return response.json()["ticket"]


class Socket:
    def __init__(self, ws: Client):
        self.ws = ws
        # The first frame is the user's presence: the connection is held (and subscribed) from then on.
        first = self.next()
        assert first["event"] == "presence:updated", first

    @property
    def local_port(self) -> int:
        return self.ws.sock.getsockname()[1]

    def send(self, event: str, data: dict | None = None) -> None:
        self.ws.send(json.dumps({"event": event, "data": data or {}}))

    def next(self, timeout: float = WAIT) -> dict:
        frame = self.ws.receive(timeout=timeout)
        assert frame is not None, "no frame in time"
        return json.loads(frame)

    def next_event(self, name: str, timeout: float = WAIT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.01, deadline - time.monotonic()))
            if frame["event"] == name:
                return frame["data"]

    def closed_with(self, timeout: float = WAIT) -> int:
        """Read until the server closes; the close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.receive(timeout=0.2)
        except ConnectionClosed:
            return self.ws.close_reason
        raise AssertionError("the server did not close the connection")

    def close(self) -> None:
        try:
            self.ws.close()
        except ConnectionClosed:
            pass


@pytest.fixture
def serve(make_config, tmp_path):
    """Start Gatehouse with this test's database and extra settings; stopped after the test.
    Its log is gunicorn-<n>.log in the test's temporary directory."""
    started = []

    def start(processes: int = 1, public_host: str = "127.0.0.1", **overrides) -> Gatehouse:
        server = Gatehouse(make_config(**overrides), tmp_path / f"gunicorn-{len(started)}.log", processes,
                           public_host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve) -> Gatehouse:
    return serve()
