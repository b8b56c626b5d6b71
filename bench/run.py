"""make bench: Gatehouse under load on loopback, on SQLite and on PostgreSQL, bounded in time.

Starts gunicorn (2 processes) against a fresh database, then measures, in one run:
- argon2id verification time and the login ceiling C = verifications/s of two processes;
- POST /auth/login with a new connection per request (wrk), as a ratio of C;
- GET /auth/me at 16 connections (wrk);
- POST /auth/refresh on 4 chains that each follow their own rotation (a small client: single-use
  tokens defeat fixed-body tools).
Rate limits are switched off by RATELIMIT_ENABLED=0, which production refuses.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import Postgres, postgres_bin, free_port  # noqa: E402

PASSWORD = "bench password that is long enough"
PHASE_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ARGON2 = {"ARGON2_MEMORY_KIB": "19456", "ARGON2_TIME_COST": "2", "ARGON2_PARALLELISM": "1"}


# ---- argon2 ceiling ------------------------------------------------------------------------------

def _verify_loop(seconds: float, queue) -> None:
    from argon2 import PasswordHasher

    hasher = PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1)
    stored = hasher.hash(PASSWORD)
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hasher.verify(stored, PASSWORD)
        count += 1
    queue.put(count)


def argon2_figures() -> tuple[float, float]:
    """(one verification in ms, verifications per second of two processes together)."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher(memory_cost=19456, time_cost=2, parallelism=1)
    stored = hasher.hash(PASSWORD)
    samples = []
    for _ in range(15):
        start = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        samples.append(time.perf_counter() - start)
    one = statistics.median(samples)
    queue = multiprocessing.Queue()
    seconds = 4.0
    procs = [multiprocessing.Process(target=_verify_loop, args=(seconds, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return one * 1000, total / seconds


# ---- the service ---------------------------------------------------------------------------------

class Service:
    def __init__(self, env: dict):
        self.port = free_port()
        self.env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port), "WEB_CONCURRENCY": "2",
                    "RATELIMIT_ENABLED": "0", "APP_ENV": "development", "SECRET_KEY": "bench-" + "k" * 40,
                    "OUTBOX_INLINE": "0", **ARGON2}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        bin_dir = Path(sys.executable).parent
        subprocess.run([str(bin_dir / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=self.env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.process = subprocess.Popen([str(bin_dir / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                        cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not become ready")

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, json.loads(data) if data else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


# ---- load ------------------------------------------------------------------------------------------

def wrk(url: str, connections: int, script: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{PHASE_SECONDS}s", "--latency", "--timeout",
                              "10s", "-s", f.name, url], capture_output=True, text=True, timeout=PHASE_SECONDS + 30
                             ).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        latency[pct] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return {"rps": rps, "p50": latency.get("50"), "p99": latency.get("99"), "errors": failures}


def lua(method: str, headers: dict, body: str | None = None) -> str:
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body)}")
    return "\n".join(lines) + "\n"


def refresh_chains(service: Service, chains: int) -> dict:
    """Each chain signs in once, then refreshes with the token it was last given."""
    starts = []
    for i in range(chains):
        status, body = service.request("POST", "/auth/login", {"email": "runner@example.com", "password": PASSWORD})
        assert status == 200, body
        starts.append(body["tokens"]["refreshToken"])
    latencies: list[float] = []
    codes: dict[int, int] = {}
    reused = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + PHASE_SECONDS

    def chain(token: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            conn.request("POST", "/auth/refresh", json.dumps({"refreshToken": token}),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = json.loads(response.read())
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed * 1000)
                codes[response.status] = codes.get(response.status, 0) + 1
                if response.status != 200 and data.get("code") == "refresh_token_reused":
                    reused[0] += 1
            if response.status != 200:
                return
            token = data["tokens"]["refreshToken"]

    threads = [threading.Thread(target=chain, args=(token,)) for token in starts]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - began
    latencies.sort()
    ok = codes.get(200, 0)
    return {"rps": ok / took, "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "errors": sum(v for k, v in codes.items() if k != 200), "reused": reused[0]}


def run_backend(name: str, env: dict, one_ms: float, ceiling: float) -> str:
    service = Service(env)
    service.start()
    try:
        status, body = service.request("POST", "/auth/register", {"email": "runner@example.com", "password": PASSWORD})
        assert status == 201, body
        token = body["tokens"]["accessToken"]
        url = f"http://127.0.0.1:{service.port}"
        login = wrk(url + "/auth/login", 4, lua("POST", {"Content-Type": "application/json", "Connection": "close"},
                                                json.dumps({"email": "runner@example.com", "password": PASSWORD})))
        me = wrk(url + "/auth/me", 16, lua("GET", {"Authorization": f"Bearer {token}"}))
        refresh = refresh_chains(service, 4)
    finally:
        service.stop()
    ratio = login["rps"] / ceiling
    print(f"[{name}] login   {login['rps']:8.1f} req/s  p50 {login['p50']:7.1f} ms  p99 {login['p99']:7.1f} ms  "
          f"errors {login['errors']}  ratio to ceiling {ratio:.2f}  (p99 = {login['p99'] / one_ms:.1f} x one verify)")
    print(f"[{name}] me      {me['rps']:8.1f} req/s  p50 {me['p50']:7.1f} ms  p99 {me['p99']:7.1f} ms  "
          f"errors {me['errors']}")
    print(f"[{name}] refresh {refresh['rps']:8.1f} req/s  p50 {refresh['p50']:7.1f} ms  p99 {refresh['p99']:7.1f} ms  "
          f"errors {refresh['errors']}  reused {refresh['reused']}")
    return (f"login/ceiling {ratio:.2f} · me {me['rps']:.0f} req/s p99 {me['p99']:.0f} ms · "
            f"refresh {refresh['rps']:.0f} req/s p99 {refresh['p99']:.0f} ms ({name})")


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("bench: wrk is missing; install it with: apt-get install wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ensure_wrk()
    one_ms, ceiling = argon2_figures()
    print(f"argon2id m=19456 t=2 p=1: one verification {one_ms:.1f} ms; "
          f"two processes {ceiling:.1f} verifications/s = login ceiling C on {os.cpu_count()} cores")
    summaries = []
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
        summaries.append(run_backend("sqlite", {"DATABASE_URL": f"sqlite:///{tmp}/bench.db"}, one_ms, ceiling))
    bindir = postgres_bin()
    if bindir is None:
        print("[postgres] skipped: PostgreSQL server binaries not installed")
    else:
        pg = Postgres(bindir)
        pg.start()
        try:
            subprocess.run([*pg.as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                            "postgres", "bench"], check=True)
            summaries.append(run_backend("postgres", {"DATABASE_URL": pg.url("bench")}, one_ms, ceiling))
        finally:
            pg.stop()
    print("summary: " + " | ".join(summaries))


if __name__ == "__main__":
    main()
