"""End-to-end speed and memory of async batch jobs on the local backend, against a ``tollgate serve`` child
process (SQLite, local files):

    .venv/bin/python bench/batch.py [--lines 100000] [--chunk-lines 1000] [--sync-lines 5000] [--kill-at 0.5]
    .venv/bin/python bench/batch.py --upload-only --lines 5000000   # upload alone: RSS while 5M lines stream in

It measures, in one run: the synchronous ``POST /v1/classify/batch`` throughput (1,000 texts a call, cache
off) as the baseline; then one job of ``--lines`` lines: the upload (MB/s), the processing (lines/s from start
to completed) and the ratio to the baseline; the gateway's RSS after start-up, its peak during the upload and
its peak during the processing (sampled every 0.1 s with psutil). ``--kill-at F`` SIGKILLs the gateway when a
fraction F of the lines is done, restarts it, and reports the time the resume cost.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.serve import free_port, funded_key, serve  # noqa: E402

LABELS = ["billing", "technical", "shipping", "account", "other"]
TEMPLATES = [
    "I was charged twice for order {n}, please refund one of the payments",
    "The mobile app crashes every time I open the settings page (build {n})",
    "My parcel {n} has not arrived after two weeks, where is it?",
    "I cannot log in to my account {n}; the password reset e-mail never comes",
    "Do you have a store near postcode {n}?",
]


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.pid: int | None = None
        self.phase = "start"
        self.peaks: dict[str, float] = {}
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            if self.pid is not None:
                try:
                    rss = psutil.Process(self.pid).memory_info().rss / 2**20
                    self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
                except psutil.Error:
                    pass
            time.sleep(0.1)


def write_input(path: Path, lines: int) -> int:
    with path.open("wb") as f:
        block: list[bytes] = []
        for i in range(lines):
            block.append(orjson.dumps({"text": TEMPLATES[i % 5].format(n=i), "id": i}) + b"\n")
            if len(block) == 10_000:
                f.write(b"".join(block))
                block = []
        f.write(b"".join(block))
    return path.stat().st_size


def file_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            yield block


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--chunk-lines", type=int, default=1000)
    p.add_argument("--sync-lines", type=int, default=5000)
    p.add_argument("--kill-at", type=float, default=None)
    p.add_argument("--upload-only", action="store_true")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tollgate-bench-batch-"))
    db_url = f"sqlite+aiosqlite:///{tmp / 'tollgate.db'}"
    config: dict[str, Any] = {
        "database_url": db_url,
        "server": {"usage_flush_interval": 0.05},
        "classification": {"preload": not args.upload_only},
        "batch": {
            "path": str(tmp / "files"),
            "chunk_lines": args.chunk_lines,
            "poll_interval": 0.2,
            "workers": 0 if args.upload_only else 1,
            "lease_seconds": 10,
        },
    }
    config_path = tmp / "tollgate.yaml"
    config_path.write_text(yaml.safe_dump(config))
    key = asyncio.run(funded_key(db_url, Decimal("1000"), "bench"))
    port, log = free_port(), tmp / "serve.log"
    sampler = RssSampler()
    sampler.start()
    proc = serve(config_path, port, log)
    sampler.pid = proc.pid
    c = httpx.Client(
        base_url=f"http://127.0.0.1:{port}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=600
    )
    try:
        size = write_input(tmp / "input.ndjson", args.lines)
        print(f"input: {args.lines} lines, {size / 2**20:.1f} MiB")
        sync_rate = None
        if not args.upload_only:
            texts = [TEMPLATES[i % 5].format(n=10**7 + i) for i in range(1000)]
            c.post("/classify/batch", json={"labels": LABELS, "texts": texts[:10], "cache": False})  # warm
            sampler.phase = "idle"
            time.sleep(0.5)
            t = time.perf_counter()
            done = 0
            while done < args.sync_lines:
                r = c.post("/classify/batch", json={"labels": LABELS, "texts": texts, "cache": False})
                assert r.status_code == 200, r.text
                done += len(texts)
            sync_rate = done / (time.perf_counter() - t)
            print(f"sync /v1/classify/batch: {sync_rate:.0f} lines/s ({done} lines, 1000 a call)")
        sampler.phase = "idle"
        time.sleep(0.5)
        job = c.post("/batch", json={"labels": LABELS}).json()
        sampler.phase = "upload"
        t = time.perf_counter()
        r = c.put(job["upload_url"], content=file_blocks(tmp / "input.ndjson"))
        assert r.status_code == 200, r.text
        up = time.perf_counter() - t
        print(f"upload: {up:.2f} s, {size / 2**20 / up:.0f} MiB/s")
        if args.upload_only:
            return
        sampler.phase = "processing"
        t = time.perf_counter()
        assert c.post(f"/batch/{job['job_id']}/start").status_code == 202
        killed = None
        while (status := c.get(f"/batch/{job['job_id']}").json())["status"] == "processing":
            if (
                args.kill_at is not None
                and killed is None
                and status["requests_completed"] >= args.kill_at * args.lines
            ):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed = time.perf_counter() - t
                print(f"SIGKILL at {status['requests_completed']} lines done ({killed:.1f} s)")
                proc = serve(config_path, port, log)
                sampler.pid = proc.pid
            time.sleep(0.5)
        took = time.perf_counter() - t
        assert status["status"] == "completed", status
        rate = args.lines / took
        ratio = f" = {rate / sync_rate:.2f} x sync" if sync_rate else ""
        print(f"processing: {took:.1f} s, {rate:.0f} lines/s{ratio}")
        print(
            f"job: {status['requests_completed']} completed, {status['requests_failed']} failed, "
            f"{status['actual_tokens']} tokens, cost {status['cost']}"
        )
        url = c.get(f"/batch/{job['job_id']}/results").json()["download_url"]
        n = last = 0
        with c.stream("GET", url) as r:
            for line in r.iter_lines():
                row = orjson.loads(line)
                assert row["line"] == last + 1 and row["id"] == last, row
                last = row["line"]
                n += 1
        assert n == args.lines
        print(f"results: {n} lines, in input order")
    finally:
        sampler.stop = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        peaks = ", ".join(f"{k} {v:.0f} MiB" for k, v in sampler.peaks.items())
        print(f"gateway peak RSS by phase: {peaks}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
