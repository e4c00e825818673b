"""Streams and process lifecycle: client disconnects, restarts, nothing unbilled and no row lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

from tests.support.gateway import Gateway, gateway_config
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "tell me a long story"}]


def test_client_disconnect_cancels_upstream_and_bills_what_was_produced(
    gateway: Gateway, sim: SimServer
) -> None:
    key = gateway.create_key()
    body = {
        "model": "sim-small",
        "messages": USER,
        "stream": True,
        "sim": {"completion_tokens": 200, "chunk_delay_ms": 20, "scenario": "disconnect"},
    }
    with httpx.Client(timeout=10) as client:
        with client.stream(
            "POST",
            gateway.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen += 1
                if seen >= 6:
                    break
    (row,) = gateway.usage_rows(expect=1)
    assert row.status == 499 and row.error_code == "CLIENT_DISCONNECTED"
    assert row.estimated and 3 <= row.completion_tokens < 200
    assert row.cost > 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rec = [q for q in sim.requests() if (q["body"].get("sim") or {}).get("scenario") == "disconnect"][-1]
        if rec["cancelled"]:
            break
        time.sleep(0.05)
    assert rec["cancelled"], "the upstream request was not cancelled"
    assert rec["chunks_sent"] < 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_flushes_every_buffered_usage_row(tmp_path: Path, sim: SimServer) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'tollgate.db'}"
    cfg = gateway_config(sim.base_url, db_url, usage_flush_interval=60, usage_batch_size=10_000)
    config = tmp_path / "restart.yaml"
    config.write_text(yaml.safe_dump(cfg))
    helper = Gateway(tmp_path, sim.base_url)  # only for key creation and reading rows (same database)
    key = helper.create_key(balance="5")
    port = _free_port()
    env = {**os.environ, "TOLLGATE_DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tollgate",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "gateway did not start"
                time.sleep(0.1)

        def call(i: int) -> int:
            r = httpx.post(
                url,
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "sim-small", "messages": [{"role": "user", "content": f"n{i}"}]},
            )
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(call, range(60)))
        assert statuses == [200] * 60
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        assert health["usage_rows_pending"] == 60  # nothing flushed yet: the interval is 60 s
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status reports it.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = helper.usage_rows()
    assert len(rows) == 60 and all(r.status == 200 for r in rows)
    assert helper.balance() == 5 - sum(r.cost for r in rows)
