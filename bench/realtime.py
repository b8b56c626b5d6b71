"""make bench, realtime phase: thousands of idle WebSockets on one instance beside its HTTP answers.

On one instance (the Procfile's web:, gunicorn with its default two processes): open BENCH_SOCKETS
(5,000) idle authenticated sockets, each answering the server's pings; GET /auth/me at 16
connections (wrk) without them and then beside them, back to back; resident memory per socket (the
workers' RSS before and after); the fan-out latency of one entity:updated to a user holding 16
connections; and a reconnect storm:
on a deploy every socket closes with 1001 and all reconnect at once, while a client of its own records every
/auth/me request's latency second by second. The deploy is the one a single machine can do without
downtime: the new instance starts on the same port (SO_REUSEPORT: gunicorn's reuse_port), then the
old one gets SIGTERM, stops listening and closes its sockets with 1001. On PostgreSQL + Redis a second instance makes the
profile changes, so the events cross instances. Bounded in time, loopback only.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bench.accounts import seeded_tokens
from bench.load import Timeline, percentile
from bench.swarm import Swarm, raise_open_files

SOCKETS = int(os.environ.get("BENCH_SOCKETS", "5000"))
PER_USER = 10  # idle sockets per seeded account: below WS_CONNECTIONS_PER_USER
FANOUT = 16  # the connections of the user whose profile changes (WS_CONNECTIONS_PER_USER)
ROUNDS = 40
ME_SECONDS = 6  # each /auth/me measurement (wrk), without and beside the sockets
STORM_LIMIT = 45  # seconds of a storm the bench waits for; it reports how many were back by then
GOAL_SOCKETS, GOAL_KIB, GOAL_ME_RATIO, GOAL_P99_RATIO, GOAL_STORM_RATIO, GOAL_SLOW_SECONDS = (
    5000, 50.0, 0.8, 1.25, 10.0, 3)


def worker_pids(service) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(service.process.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def resident_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3]
    return "?"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_booted(service, workers: int = 2, timeout: float = 60) -> None:
    """Until the service's workers have loaded the app: a request to the shared port may be answered
    by the old instance, so readiness is read from the workers themselves (they go quiet once loaded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        time.sleep(0.5)
        pids = worker_pids(service)
        try:
            used = sum(cpu_seconds(pid) for pid in pids)
        except OSError:
            continue
        if len(pids) >= workers and last is not None and used - last < 0.05:  # under 10 % of a core
            return
        last = used
    raise RuntimeError("the new instance did not finish booting")


def wait_greeted(swarm: Swarm, timeout: float) -> None:
    """Until every peer has had its first frame (its presence announced: the opening is over), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while swarm.greeted() < len(swarm.peers) and time.monotonic() < deadline:
        time.sleep(0.05)


def fan_out(swarm: Swarm, peers: list, writer, token: str) -> dict:
    """ROUNDS profile changes through `writer`; each one's arrival at the 16 connections, in ms."""
    latencies = []
    missing = 0
    for round_ in range(ROUNDS):
        started = time.perf_counter()
        status, body = writer.request("PATCH", "/users/me", {"displayName": f"Fan-out {round_}"}, token)
        assert status == 200, body
        version = body["user"]["version"]
        deadline = time.monotonic() + 10
        while any(version not in peer.versions for peer in peers) and time.monotonic() < deadline:
            time.sleep(0.002)
        for peer in peers:
            if version in peer.versions:
                latencies.append((peer.versions[version] - started) * 1000)
            else:
                missing += 1
        time.sleep(0.02)
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "samples": len(latencies),
            "missing": missing}


def storm(swarm: Swarm, holder, successor, token: str) -> dict:
    """Deploy: `successor` starts on the holder's port, then the holder gets SIGTERM; every socket
    gets 1001 and reconnects at once, to the successor."""
    swarm.reset_storm()
    successor.start()
    wait_booted(successor)
    timeline = Timeline(holder.port, token)  # its connections land on either instance, as a router's would
    timeline.start()
    time.sleep(4)  # the quiet p99: its last 3 s, after a second that warms up the new instance's processes
    hup_epoch, hup = time.time(), time.perf_counter()
    holder.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STORM_LIMIT
    while not swarm.storm_done(len(swarm.peers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    done = time.perf_counter()
    # Counted as the window ends: the peers still away keep reconnecting while the timeline stops.
    reconnected = [peer.reconnected_at for peer in swarm.peers if peer.reconnected_at is not None]
    time.sleep(1)
    samples = timeline.stop()
    # "Quiet": the last 3 s before the deploy (the first requests warm up the new instance's processes).
    before = [latency for started, latency, status in samples
              if hup_epoch - 3 <= started < hup_epoch and status == 200]
    quiet = percentile(before, 0.99) * 1000
    slices: dict[int, list[float]] = {}
    for started, latency, status in samples:
        if started >= hup_epoch:
            slices.setdefault(int(started - hup_epoch), []).append(latency)
    p99s = [percentile(slices[second], 0.99) * 1000 for second in sorted(slices)]
    return {
        "reconnected": len(reconnected), "of": len(swarm.peers),
        "first_1001": (swarm.going_away_at - hup) if swarm.going_away_at else None,
        "all_back": (max(reconnected) - hup) if reconnected else done - hup,
        "first_back": (min(reconnected) - hup) if reconnected else None,
        "quiet_p99": quiet, "p99s": p99s, "worst_p99": max(p99s, default=0.0),
        "slow_seconds": sum(1 for p99 in p99s if p99 > GOAL_STORM_RATIO * quiet),
        "http_errors": sum(1 for _, _, status in samples if status not in (200, 0)),
        "broken": sum(1 for _, _, status in samples if status == 0),
        "requests": len(samples),
    }


def run(name: str, services: list, wrk, lua, prepare, successor) -> dict:
    """The realtime phase on `services` (started): the sockets and HTTP on the first, profile changes
    through the last (another instance on PostgreSQL + Redis); `successor()` makes the instance that
    replaces the first at the deploy (started and stopped by the caller's list)."""
    holder, writer = services[0], services[-1]
    began = time.perf_counter()
    before, now = raise_open_files()
    pids = worker_pids(holder)
    print(f"[{name} realtime] open files: the bench raised its own limit from {before} to {now}; the server "
          f"raises its own to its hard limit at start (gunicorn.conf.py): {open_files_limit(pids[0])} per worker",
          flush=True)
    users = -(-SOCKETS // PER_USER)
    tokens = seeded_tokens(holder.env, users + 1)
    idle, fan_token = tokens[:users], tokens[users]
    me_token = prepare(holder)
    me = lambda: wrk(f"http://127.0.0.1:{holder.port}/auth/me", 16, lua("GET", {"Authorization": f"Bearer {me_token}"}),
                     ME_SECONDS)
    for _ in range(100):  # warm up both processes (a new connection each lands on either)
        holder.request("GET", "/auth/me", token=me_token)
    swarm = Swarm(holder.port)
    try:
        swarm.open([(fan_token, users)])  # the loop and jobs threads start with the first socket
        wait_greeted(swarm, 10)
        rss_before = resident_kib(pids)
        quiet = me()
        took = swarm.open([(idle[i // PER_USER], i // PER_USER) for i in range(SOCKETS)])
        # Idle means the opening is over: every socket has had its presence announced (the jobs
        # thread does that after the 101, in batches), then the sockets only answer pings.
        wait_greeted(swarm, 60)
        time.sleep(1)
        held = swarm.open_count() - 1
        per_socket = (resident_kib(pids) - rss_before) / max(held, 1)
        print(f"[{name} realtime] {held:,} idle sockets open in {took:.1f} s (refused {dict(swarm.refused)}), "
              f"{per_socket:.1f} KiB resident each", flush=True)
        loud = me()
        pinged = sum(1 for peer in swarm.peers if peer.pings)
        fan_peers = swarm.peers[:1]
        swarm.open([(fan_token, users)] * (FANOUT - 1))
        fan_peers += swarm.peers[-(FANOUT - 1):]
        fan = fan_out(swarm, fan_peers, writer, fan_token)
        crossing = "through the other instance (Redis)" if writer is not holder else "across the processes"
        print(f"[{name} realtime] fan-out of entity:updated to 16 connections, {crossing}: p50 {fan['p50']:.1f} ms, "
              f"p99 {fan['p99']:.1f} ms ({fan['samples']} arrivals, {fan['missing']} missing)", flush=True)
        services.append(successor())
        storm_figures = storm(swarm, holder, services[-1], me_token)
        pinged_total = sum(1 for peer in swarm.peers if peer.pings)
    finally:
        swarm.close()
    figures = {"held": held, "kib": per_socket, "quiet": quiet, "loud": loud, "fan": fan, "storm": storm_figures,
               "pinged": max(pinged, pinged_total), "took": time.perf_counter() - began}
    s = storm_figures
    print(f"[{name} realtime] /auth/me without sockets {quiet['rps']:.1f} req/s p99 {quiet['p99']:.1f} ms; beside "
          f"{held:,} sockets {loud['rps']:.1f} req/s p99 {loud['p99']:.1f} ms (errors {quiet['errors']}/{loud['errors']}); "
          f"{figures['pinged']:,} sockets answered a ping", flush=True)
    away = s["of"] - s["reconnected"]
    window = f" when the bench's {STORM_LIMIT} s window ended ({away:,} still away)" if away else ""
    print(f"[{name} realtime] reconnect storm: {s['reconnected']:,} of {s['of']:,} back {s['all_back']:.1f} s after "
          f"the old instance's SIGTERM{window}, {s['reconnected'] / max(s['all_back'], 0.001):.0f} a second "
          f"(first 1001 at {s['first_1001'] or 0:.2f} s); refused upgrades {dict(swarm.refused)}, "
          f"connection retries {swarm.retries}; /auth/me p99 before {s['quiet_p99']:.1f} ms, per second after "
          f"{', '.join(f'{p:.0f}' for p in s['p99s'])} ms; {s['slow_seconds']} s above 10x; HTTP errors "
          f"{s['http_errors']}, kept-alive connections closed by the old workers {s['broken']}", flush=True)
    figures["refused"] = sum(swarm.refused.values())
    print(f"[{name} realtime] phase took {figures['took']:.0f} s", flush=True)
    return figures


def goal_lines(results: dict[str, dict]) -> list[str]:
    rows = []

    def row(label: str, value: float, goal: float, unit: str, at_most: bool = False) -> None:
        ratio = (goal / value if value else float("inf")) if at_most else (value / goal if goal else 0.0)
        sign = "<=" if at_most else ">="
        rows.append(f"{label:40s} {value:9.1f} {unit:5s} goal {sign} {goal:8.1f}  ratio {ratio:5.2f}"
                    f"  {'met' if ratio >= 1 else 'MISSED'}")

    for backend, f in results.items():
        tag = f"{backend} realtime"
        row(f"{tag}: idle sockets held", f["held"], GOAL_SOCKETS, "")
        row(f"{tag}: KiB per idle socket", f["kib"], GOAL_KIB, "KiB", at_most=True)
        row(f"{tag}: me beside sockets", f["loud"]["rps"], GOAL_ME_RATIO * f["quiet"]["rps"], "req/s")
        row(f"{tag}: me p99 beside sockets", f["loud"]["p99"], GOAL_P99_RATIO * f["quiet"]["p99"], "ms", at_most=True)
        s = f["storm"]
        row(f"{tag}: storm reconnected", s["reconnected"], s["of"], "")
        rows.append(f"{tag + ': storm HTTP errors':40s} {s['http_errors'] + f['refused']:9d}       goal  =        0"
                    f"               {'met' if s['http_errors'] + f['refused'] == 0 else 'MISSED'}")
        row(f"{tag}: storm seconds p99 > 10x quiet", s["slow_seconds"], GOAL_SLOW_SECONDS, "s", at_most=True)
        rows.append(f"{tag + ': storm, all back after':40s} {s['all_back']:9.1f} s     (reported)")
        rows.append(f"{tag + ': fan-out p50 / p99':40s} {f['fan']['p50']:9.1f} / {f['fan']['p99']:.1f} ms  (reported)")
    return rows
