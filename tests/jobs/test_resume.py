"""A ``tollgate serve`` killed with SIGKILL in the middle of a job, then started again: the job completes with
exactly one result per input line, in order, and every chunk billed once (usage rows, balance). The real
model classifies; the gateway is a child process so the kill is a real one."""

from __future__ import annotations

import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
import yaml

from tests.support.gateway import gateway_config
from tests.support.serve import free_port, funded_key, serve
from tests.support.servers import run
from tollgate.storage import open_storage
from tollgate.storage.money import to_units

LABELS = ["billing", "technical", "shipping"]
LINES = 400
CHUNK = 40


async def query(db_url: str, sql: str) -> list[Any]:
    store = open_storage(db_url)
    try:
        async with store.engine.connect() as conn:
            return list(await conn.execute(sa.text(sql)))
    finally:
        await store.close()


def test_a_gateway_killed_mid_job_resumes_it_with_nothing_lost_duplicated_or_billed_twice(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'tollgate.db'}"
    config = gateway_config("http://127.0.0.1:9/v1", db_url)
    config["batch"] = {
        "path": str(tmp_path / "files"),
        "chunk_lines": CHUNK,
        "lease_seconds": 3,
        "poll_interval": 0.1,
    }
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump(config))
    key = run(funded_key(db_url, Decimal("1"), "batch"))
    port, log = free_port(), tmp_path / "serve.log"
    texts = ["Refund the double charge on my card", "The login page shows error 500", "Where is my parcel?"]
    data = b"".join(orjson.dumps({"text": texts[i % 3], "id": i}) + b"\n" for i in range(LINES))

    proc = serve(path, port, log)
    try:
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers={"Authorization": f"Bearer {key}"})
        job = c.post("/batch", json={"labels": LABELS}).json()
        assert c.put(job["upload_url"], content=data).status_code == 200
        assert c.post(f"/batch/{job['job_id']}/start").status_code == 202
        deadline = time.monotonic() + 180
        while c.get(f"/batch/{job['job_id']}").json()["requests_completed"] < 2 * CHUNK:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        # Kill while a chunk is claimed (between two chunks nothing is in flight to redo).
        running = "SELECT count(*) FROM batch_chunks WHERE status = 'running'"
        while not run(query(db_url, running))[0][0]:
            assert time.monotonic() < deadline, "no chunk claimed"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The server is gone: read the database.
    done_at_kill = run(query(db_url, "SELECT count(*) FROM batch_chunks WHERE status = 'done'"))[0][0]
    assert 2 <= done_at_kill < LINES // CHUNK

    proc = serve(path, port, log)
    try:
        deadline = time.monotonic() + 240
        while (status := c.get(f"/batch/{job['job_id']}").json())["status"] == "processing":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["status"] == "completed", status
        assert (status["requests_total"], status["requests_completed"], status["requests_failed"]) == (
            LINES,
            LINES,
            0,
        )
        url = c.get(f"/batch/{job['job_id']}/results").json()["download_url"]
        lines = [orjson.loads(x) for x in c.get(url).content.splitlines()]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    assert [x["line"] for x in lines] == list(range(1, LINES + 1))
    assert [x["id"] for x in lines] == list(range(LINES))
    rows = run(
        query(db_url, "SELECT request_id, prompt_tokens, cost_units FROM usage WHERE endpoint = 'batch'")
    )
    assert sorted(r.request_id for r in rows) == [f"{job['job_id']}-{i:06d}" for i in range(LINES // CHUNK)]
    assert sum(r.prompt_tokens for r in rows) == sum(x["tokens"] for x in lines) == status["actual_tokens"]
    account = run(query(db_url, "SELECT balance_units, spent_units FROM accounts"))[0]
    spent = sum(r.cost_units for r in rows)
    assert account.spent_units == spent == to_units(Decimal(status["cost"])) > 0
    assert account.balance_units == to_units(Decimal(1)) - spent
    redone = run(query(db_url, "SELECT count(*) FROM batch_chunks WHERE attempts > 1"))[0][0]
    assert redone >= 1  # the chunk in flight at the kill was claimed again after its lease expired
