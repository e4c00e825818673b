"""Gateway overhead benchmark: the simulator hit directly vs through Tollgate, in the same run.

    .venv/bin/python bench/gateway.py [--requests 2000] [--quick]

Starts the provider simulator and a gateway (SQLite, fresh database) as separate processes, the gateway pinned
to one core, then for JSON and 20-chunk streams at concurrency 1, 16 and 64 prints throughput and p50/p99
latency direct and through the gateway, their ratios, and the gateway's CPU time per request (from the
process's own accounting). Scenario "0 ms" has an instant upstream (overhead); "100 ms" adds upstream latency
(throughput under concurrency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Write one sentence about toll roads."}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited: {proc.args}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


@dataclass
class Result:
    rps: float
    p50: float
    p99: float


async def load(url: str, headers: dict[str, str], body: dict, n: int, c: int, stream: bool) -> Result:
    payload = json.dumps({**body, "stream": stream}).encode()
    latencies: list[float] = []
    conn = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(connector=conn) as session:
        counter = iter(range(n))

        async def worker() -> None:
            for _ in counter:
                t0 = time.perf_counter()
                async with session.post(url, data=payload, headers=headers) as r:
                    data = await r.read()
                    if r.status != 200 or (stream and not data.rstrip().endswith(b"[DONE]")):
                        raise SystemExit(f"bad response {r.status}: {data[:300]!r}")
                latencies.append(time.perf_counter() - t0)

        # warm-up
        for _ in range(min(20, n)):
            async with session.post(url, data=payload, headers=headers) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        wall = time.perf_counter() - t0
    latencies.sort()
    return Result(
        n / wall, statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000
    )


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


@dataclass
class Stack:
    sim: subprocess.Popen[bytes]
    gw: subprocess.Popen[bytes]
    floor: subprocess.Popen[bytes]
    direct: str
    via: str
    floor_url: str
    key: str

    def stop(self) -> None:
        for p in (self.gw, self.floor, self.sim):
            p.terminate()
            p.wait()


def start_stack(tmp: Path, latency_ms: int) -> Stack:
    py = sys.executable
    sim_port, gw_port = free_port(), free_port()
    sim = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            py,
            "-m",
            "tollgate.simulator",
            "--port",
            str(sim_port),
            "--latency-ms",
            str(latency_ms),
            "--completion-tokens",
            "20",
        ],
        cwd=ROOT,
    )
    db = f"sqlite+aiosqlite:///{tmp}/bench-{latency_ms}.db"
    cfg = {
        "database_url": db,
        "providers": [
            {"name": "sim", "kind": "openai", "base_url": f"http://127.0.0.1:{sim_port}/v1", "api_key": "sim"}
        ],
        "models": [
            {
                "id": "bench",
                "pricing": {"prompt": "0.0000001", "completion": "0.0000002"},
                "deployments": [{"provider": "sim", "model": "bench"}],
            }
        ],
    }
    cfg_path = tmp / f"bench-{latency_ms}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    tg = [py, "-m", "tollgate"]
    key = json.loads(subprocess.check_output([*tg, "keys", "create", "--config", str(cfg_path), "--json"]))[
        "key"
    ]
    subprocess.check_call(
        [*tg, "balance", "add", "1000000", "--config", str(cfg_path)], stdout=subprocess.DEVNULL
    )
    gw = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            *tg,
            "serve",
            "--config",
            str(cfg_path),
            "--port",
            str(gw_port),
            "--log-level",
            "warning",
        ],
    )
    floor_port = free_port()
    floor = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            py,
            str(ROOT / "bench" / "min_proxy.py"),
            f"http://127.0.0.1:{sim_port}/v1/chat/completions",
            str(floor_port),
        ],
    )
    wait_up(f"http://127.0.0.1:{sim_port}/v1/models", sim)
    wait_up(f"http://127.0.0.1:{gw_port}/healthz", gw)
    wait_up(f"http://127.0.0.1:{floor_port}/healthz", floor)
    return Stack(
        sim,
        gw,
        floor,
        f"http://127.0.0.1:{sim_port}/v1/chat/completions",
        f"http://127.0.0.1:{gw_port}/v1/chat/completions",
        f"http://127.0.0.1:{floor_port}/v1/chat/completions",
        key,
    )


def measure(
    url: str, headers: dict[str, str], n: int, c: int, stream: bool, pid: int
) -> tuple[Result, float]:
    before = cpu_seconds(pid)
    res = asyncio.run(load(url, headers, BODY, n, c, stream))
    return res, (cpu_seconds(pid) - before) * 1000 / (n + min(20, n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    ap.add_argument(
        "--latency", type=int, action="append", help="upstream latency in ms (default: 0 and 100)"
    )
    ap.add_argument("--mode", choices=("json", "stream"), action="append", help="default: both")
    ap.add_argument("-c", "--concurrency", type=int, action="append", help="default: 1, 16, 64")
    args = ap.parse_args()
    latencies = args.latency or [0, 100]
    modes = args.mode or ["json", "stream"]
    levels = args.concurrency or [1, 16, 64]
    n = 300 if args.quick else args.requests
    # The load generator shares core 0 with the simulator; core 1 is the gateway's (or the floor's) alone.
    os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory() as d:
        for latency in latencies:
            st = start_stack(Path(d), latency)
            try:
                for stream in (mode == "stream" for mode in modes):
                    for c in levels:
                        if latency == 0 and c == 64 and not args.concurrency:
                            continue
                        count = n if latency == 0 else max(n // (1 if c > 1 else 10), 50)
                        base = asyncio.run(load(st.direct, {}, BODY, count, c, stream))
                        floor, floor_cpu = measure(st.floor_url, {}, count, c, stream, st.floor.pid)
                        auth = {"Authorization": f"Bearer {st.key}"}
                        tg, tg_cpu = measure(st.via, auth, count, c, stream, st.gw.pid)
                        print_row(
                            latency, "stream" if stream else "json", c, base, floor, floor_cpu, tg, tg_cpu
                        )
            finally:
                st.stop()


HEADER = False


def print_row(
    lat: int, mode: str, c: int, b: Result, f: Result, f_cpu: float, t: Result, t_cpu: float
) -> None:
    global HEADER
    if not HEADER:
        print(
            "direct = simulator alone; floor = thinnest uvicorn+aiohttp pass-through; tollgate = the gateway."
        )
        print("ratios: tollgate rps / direct rps; +p50 = tollgate p50 - direct p50; cpu = ms per request.")
        print(
            f"{'upstream':>8} {'mode':>6} {'c':>3} | {'direct rps':>10} {'p50':>7} {'p99':>7} | "
            f"{'floor rps':>9} {'+p50':>6} {'p99':>7} {'cpu':>6} | {'tollgate rps':>12} {'p50':>7} {'p99':>7} | "
            f"{'rps ratio':>9} {'+p50 ms':>8} {'cpu ms':>7} {'cpu/floor':>9}"
        )
        HEADER = True
    print(
        f"{lat:>6}ms {mode:>6} {c:>3} | {b.rps:>10.0f} {b.p50:>7.2f} {b.p99:>7.2f} | "
        f"{f.rps:>9.0f} {f.p50 - b.p50:>6.2f} {f.p99:>7.2f} {f_cpu:>6.3f} | "
        f"{t.rps:>12.0f} {t.p50:>7.2f} {t.p99:>7.2f} | "
        f"{t.rps / b.rps:>9.2f} {t.p50 - b.p50:>8.2f} {t_cpu:>7.3f} {t_cpu / f_cpu:>9.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
