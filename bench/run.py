"""make bench: Gatehouse under load on loopback, on SQLite and on PostgreSQL, empty and seeded, bounded in time.

Per database, two services run side by side (gunicorn, 2 processes each): one on an empty
database, one on a database seeded in bulk with SEED_USERS users, SEED_SESSIONS sessions and
SEED_REFRESH_TOKENS refresh tokens (defaults 100,000 / 1,000,000 / 1,000,000). Each load runs on
the empty one and then at once on the seeded one, so both figures are taken in the same minute.
Measured, in one run:
- argon2id verification time and the login ceiling C = verifications/s of two processes, with the
  hasher the service uses (the widest native build present: AVX-512 or AVX2) and with argon2-cffi's portable build;
- POST /auth/login with a new connection per request (wrk), as a ratio of C;
- GET /auth/me at 16 connections (wrk);
- POST /auth/refresh on 4 chains that each follow their own rotation (a small client: single-use
  tokens defeat fixed-body tools).
Rate limits are switched off by RATELIMIT_ENABLED=0, which production refuses. The last lines
print every figure with its goal and the ratio to it.
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

from bench import realtime  # noqa: E402
from bench.seed import seed  # noqa: E402
from tests.servers import Postgres, Redis, free_port, postgres_bin, redis_bin  # noqa: E402

PASSWORD = "bench password that is long enough"
PHASE_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
# BENCH_ONLY=http or BENCH_ONLY=realtime runs one part, BENCH_DATABASES=sqlite (or postgres) one
# database; all by default.
ONLY = os.environ.get("BENCH_ONLY", "")
DATABASES = os.environ.get("BENCH_DATABASES", "sqlite,postgres").split(",")
ARGON2 = {"ARGON2_MEMORY_KIB": "19456", "ARGON2_TIME_COST": "2", "ARGON2_PARALLELISM": "1"}
SEED = {name: int(os.environ.get(f"SEED_{name.upper()}", default))
        for name, default in (("users", 100_000), ("sessions", 1_000_000), ("refresh_tokens", 1_000_000))}
# Goals: the reference figures measured beside Gatehouse on a 2-core machine (see README, Benchmark).
GOAL_REFRESH, GOAL_REFRESH_P99, GOAL_ME, GOAL_ME_P99 = 380.0, 100.0, 1550.0, 30.0
GOAL_LOGIN_RATIO, BETTER_AUTH_LOGIN, GOAL_SEEDED = 0.9, 124.0, 0.9


# ---- argon2 ceiling ------------------------------------------------------------------------------

def _hasher(native: bool):
    from gatehouse.security import argon2_native
    from gatehouse.security.passwords import Hasher

    return Hasher(memory_kib=19456, time_cost=2, parallelism=1, concurrency=1, queue_timeout=60,
                  native=argon2_native.load() if native else None)


def _verify_loop(native: bool, seconds: float, queue) -> None:
    hasher = _hasher(native)
    stored = hasher.hash(PASSWORD)
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hasher.verify(stored, PASSWORD)
        count += 1
    queue.put(count)


def argon2_figures(native: bool) -> tuple[float, float]:
    """(one verification in ms, verifications per second of two processes together)."""
    hasher = _hasher(native)
    stored = hasher.hash(PASSWORD)
    samples = []
    for _ in range(15):
        start = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        samples.append(time.perf_counter() - start)
    one = statistics.median(samples)
    queue = multiprocessing.Queue()
    seconds = 4.0
    procs = [multiprocessing.Process(target=_verify_loop, args=(native, seconds, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return one * 1000, total / seconds


# ---- the service ---------------------------------------------------------------------------------

class Service:
    def __init__(self, env: dict, port: int | None = None):
        self.port = port or free_port()  # a port of a running one: its successor (SO_REUSEPORT)
        self.env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port), "WEB_CONCURRENCY": "2",
                    "RATELIMIT_ENABLED": "0", "APP_ENV": "development", "SECRET_KEY": "bench-" + "k" * 40,
                    "OUTBOX_INLINE": "0", **ARGON2}
        self.process: subprocess.Popen | None = None

    def migrate(self) -> None:
        subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                       env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def seed(self) -> float:
        """Fill the database in bulk; the seconds it took."""
        from datetime import datetime, timezone

        from sqlalchemy import create_engine

        from gatehouse.config import database_uri

        started = time.perf_counter()
        engine = create_engine(database_uri(self.env["DATABASE_URL"], ROOT / "instance"))
        with engine.begin() as conn:
            seed(conn, **SEED, password_hash=_hasher(False).hash("seeded accounts share this password"),
                 now=datetime.now(timezone.utc))
        # Settle the bulk write as a long-lived database would have: otherwise the first load pays
        # for copying the seed's WAL into the database file (SQLite) or for autovacuum (PostgreSQL).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                conn.exec_driver_sql("VACUUM ANALYZE")
                conn.exec_driver_sql("CHECKPOINT")
        engine.dispose()
        return time.perf_counter() - started

    def start(self) -> None:
        bin_dir = Path(sys.executable).parent
        # BENCH_LOGS=<directory>: each service's log there (gunicorn-<port>-<n>.log), else none.
        logs = os.environ.get("BENCH_LOGS")
        out = open(Path(logs) / f"gunicorn-{self.port}-{time.monotonic_ns()}.log", "w") if logs else subprocess.DEVNULL
        self.process = subprocess.Popen([str(bin_dir / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
                                        cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90  # a busy machine starts slowly; a broken start fails well before
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with status {self.process.returncode} before it was ready")
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

def wrk(url: str, connections: int, script: str, seconds: int = PHASE_SECONDS) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout",
                              "10s", "-s", f.name, url], capture_output=True, text=True, timeout=seconds + 30
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


def prepare(service: Service) -> str:
    """Register the account the loads use; its access token."""
    status, body = service.request("POST", "/auth/register", {"email": "runner@example.com", "password": PASSWORD})
    assert status == 201, body
    return body["tokens"]["accessToken"]


def run_backend(name: str, envs: dict[str, dict]) -> tuple[dict[str, dict], float]:
    """The three loads on each of the services (empty, seeded), one load at a time on each in turn,
    and the login ceiling C measured just before the logins (the machine's load of the same minute)."""
    services = {label: Service(env) for label, env in envs.items()}
    figures: dict[str, dict] = {label: {} for label in services}
    try:
        tokens = {}
        for label, service in services.items():
            service.migrate()
            if label == "seeded":
                took = service.seed()
                print(f"[{name}] seeded {SEED['users']:,} users, {SEED['sessions']:,} sessions and "
                      f"{SEED['refresh_tokens']:,} refresh tokens in {took:.1f} s", flush=True)
            service.start()
            tokens[label] = prepare(service)
        _, ceiling = argon2_figures(native=True)
        print(f"[{name}] login ceiling C just before the logins: {ceiling:.1f} verifications/s", flush=True)
        login_body = json.dumps({"email": "runner@example.com", "password": PASSWORD})
        for label, service in services.items():
            figures[label]["login"] = wrk(f"http://127.0.0.1:{service.port}/auth/login", 4, lua(
                "POST", {"Content-Type": "application/json", "Connection": "close"}, login_body))
        for label, service in services.items():
            figures[label]["me"] = wrk(f"http://127.0.0.1:{service.port}/auth/me", 16,
                                       lua("GET", {"Authorization": f"Bearer {tokens[label]}"}))
        for label, service in services.items():
            figures[label]["refresh"] = refresh_chains(service, 4)
    finally:
        for service in services.values():
            service.stop()
    for label, loads in figures.items():
        for load, f in loads.items():
            extra = f"  reused {f['reused']}" if "reused" in f else ""
            print(f"[{name} {label}] {load:8s}{f['rps']:8.1f} req/s  p50 {f['p50']:7.1f} ms  "
                  f"p99 {f['p99']:7.1f} ms  errors {f['errors']}{extra}", flush=True)
    return figures, ceiling


def goal_lines(results: dict[str, dict], ceilings: dict[str, float]) -> list[str]:
    """Every figure beside its goal, as `figure  measured  goal  ratio` (ratio >= 1 meets the goal)."""
    rows = []

    def row(label: str, value: float, goal: float, unit: str, at_most: bool = False) -> None:
        ratio = (goal / value if value else 0.0) if at_most else value / goal
        sign = "<=" if at_most else ">="
        rows.append(f"{label:40s} {value:9.1f} {unit:5s} goal {sign} {goal:8.1f}  ratio {ratio:5.2f}"
                    f"  {'met' if ratio >= 1 else 'MISSED'}")

    for backend, figures in results.items():
        for label, loads in figures.items():
            tag = f"{backend} {label}"
            login, me, refresh = loads["login"], loads["me"], loads["refresh"]
            row(f"{tag}: login (goal 0.9 x C)", login["rps"], GOAL_LOGIN_RATIO * ceilings[backend], "req/s")
            row(f"{tag}: login vs better-auth", login["rps"], BETTER_AUTH_LOGIN, "req/s")
            row(f"{tag}: me", me["rps"], GOAL_ME, "req/s")
            row(f"{tag}: me p99", me["p99"], GOAL_ME_P99, "ms", at_most=True)
            refresh_goal = GOAL_REFRESH
            if backend == "postgres" and "sqlite" in results:
                refresh_goal = max(GOAL_REFRESH, 2 * results["sqlite"][label]["refresh"]["rps"])
            row(f"{tag}: refresh", refresh["rps"], refresh_goal, "req/s")
            row(f"{tag}: refresh p99", refresh["p99"], GOAL_REFRESH_P99, "ms", at_most=True)
            rows.append(f"{tag + ': refresh_token_reused':40s} {refresh['reused']:9d}       goal  =        0"
                        f"               {'met' if refresh['reused'] == 0 else 'MISSED'}")
        if "seeded" in figures:
            for load in ("login", "me", "refresh"):
                ratio = figures["seeded"][load]["rps"] / figures["empty"][load]["rps"]
                rows.append(f"{backend + ': ' + load + ' seeded/empty':40s} {ratio:9.2f}       goal >= "
                            f"{GOAL_SEEDED:8.2f}  ratio {ratio / GOAL_SEEDED:5.2f}  "
                            f"{'met' if ratio >= GOAL_SEEDED else 'MISSED'}")
    return rows


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("bench: wrk is missing; install it with: apt-get install wrk")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)


def realtime_backend(name: str, envs: list[dict]) -> dict:
    """The realtime phase on one instance per env (sharing its database, and Redis when given)."""
    services = [Service(env) for env in envs]
    try:
        services[0].migrate()
        for service in services:
            service.start()
        return realtime.run(name, services, wrk, lua, prepare, successor=lambda: Service(envs[0], services[0].port))
    finally:
        for service in services:
            service.stop()


def main() -> None:
    ensure_wrk()
    began = time.perf_counter()
    if ONLY == "realtime":
        return realtime_main(began)
    one_ms, ceiling = argon2_figures(native=True)
    portable_ms, portable_ceiling = argon2_figures(native=False)
    from gatehouse.security import argon2_native

    native = argon2_native.load()
    which = f"{native.level.label} build" if native is not None else "argon2-cffi (no native build)"
    print(f"argon2id m=19456 t=2 p=1, {which}: one verification {one_ms:.1f} ms; two processes {ceiling:.1f} "
          f"verifications/s = login ceiling C on {os.cpu_count()} cores (argon2-cffi portable: {portable_ms:.1f} ms, "
          f"{portable_ceiling:.1f}/s)", flush=True)
    results, ceilings = {}, {}
    if "sqlite" in DATABASES:
        with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
            envs = {label: {"DATABASE_URL": f"sqlite:///{tmp}/{label}.db"} for label in ("empty", "seeded")}
            results["sqlite"], ceilings["sqlite"] = run_backend("sqlite", envs)
    bindir = postgres_bin() if "postgres" in DATABASES else None
    if "postgres" in DATABASES and bindir is None:
        print("[postgres] skipped: PostgreSQL server binaries not installed")
    elif bindir is not None:
        pg = Postgres(bindir)
        pg.start()
        try:
            for label in ("empty", "seeded"):
                subprocess.run([*pg.as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                                "postgres", label], check=True)
            envs = {label: {"DATABASE_URL": pg.url(label)} for label in ("empty", "seeded")}
            results["postgres"], ceilings["postgres"] = run_backend("postgres", envs)
        finally:
            pg.stop()
    live = realtime_main(began, print_goals=False) if ONLY != "http" else {}
    print(f"goals (C per database, measured just before its logins; run took {time.perf_counter() - began:.0f} s):")
    for line in goal_lines(results, ceilings) + realtime.goal_lines(live):
        print(line)


def realtime_main(began: float, print_goals: bool = True) -> dict:
    """The realtime phase on SQLite (one instance), then on PostgreSQL + Redis (two instances)."""
    results = {}
    if "sqlite" in DATABASES:
        with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
            results["sqlite"] = realtime_backend("sqlite", [{"DATABASE_URL": f"sqlite:///{tmp}/realtime.db"}])
    bindir, redis_server = postgres_bin(), redis_bin()
    if "postgres" not in DATABASES:
        pass
    elif bindir is None or redis_server is None:
        print("[postgres realtime] skipped: PostgreSQL or Redis server binaries not installed")
    else:
        pg, redis = Postgres(bindir), Redis(redis_server)
        pg.start()
        redis.start()
        try:
            subprocess.run([*pg.as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                            "postgres", "realtime"], check=True)
            env = {"DATABASE_URL": pg.url("realtime"), "REDIS_URL": redis.url(), "PUBLIC_URL": "http://gatehouse.bench"}
            results["postgres"] = realtime_backend("postgres", [env, env])
        finally:
            redis.stop()
            pg.stop()
    if print_goals:
        print(f"goals (run took {time.perf_counter() - began:.0f} s):")
        for line in realtime.goal_lines(results):
            print(line)
    return results


if __name__ == "__main__":
    main()
