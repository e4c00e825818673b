"""Batch jobs on the S3 backend (``jobs/s3.py``) end to end: a gateway whose files live in a real SeaweedFS.
The input goes straight to the store with the presigned POST the job was created with (or through Tollgate's
upload endpoint), the results come back through a presigned GET; the real model classifies."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.gateway import Gateway
from tests.support.seaweed import SeaweedS3
from tollgate.simulator import SimServer

LABELS = ["billing", "technical", "shipping"]


def lines(n: int) -> bytes:
    texts = ["Refund my double charge", "The app crashes on start", "My parcel is lost"]
    return b"".join(orjson.dumps({"text": texts[i % 3], "custom_id": f"c{i}"}) + b"\n" for i in range(n))


@pytest.mark.parametrize("upload", ["presigned", "through-tollgate"])
def test_a_job_on_the_s3_backend(tmp_path: Path, sim: SimServer, seaweed: SeaweedS3, upload: str) -> None:
    batch = {
        "storage": "s3",
        "bucket": "tollgate-tests",
        "endpoint_url": seaweed.endpoint_url,
        "access_key_id": seaweed.access_key_id,
        "secret_access_key": seaweed.secret_access_key,
        "chunk_lines": 10,
        "poll_interval": 0.1,
        "max_input_bytes": 100_000,
    }
    with Gateway(tmp_path, sim.base_url, sections={"batch": batch}) as gw:
        c = httpx.Client(
            base_url=gw.base_url, headers={"Authorization": f"Bearer {gw.create_key()}"}, timeout=60
        )
        job = c.post("/batch", json={"labels": LABELS}).json()
        assert job["upload_method"] == "POST" and job["upload_url"].startswith(seaweed.endpoint_url)
        assert job["upload_fields"]["key"] == job["input_key"]
        data = lines(25)
        if upload == "presigned":
            r = httpx.post(job["upload_url"], data=job["upload_fields"], files={"file": ("in.ndjson", data)})
            assert r.status_code in (200, 204), r.text
        else:
            r = c.put(f"{gw.base_url}/batch/{job['job_id']}/input", content=data)
            assert r.status_code == 200 and r.json()["input_bytes"] == len(data)
        assert c.post(f"/batch/{job['job_id']}/start").status_code == 202
        deadline = time.monotonic() + 120
        while (status := c.get(f"/batch/{job['job_id']}").json())["status"] == "processing":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["status"] == "completed" and status["input_bytes"] == len(data)
        results = c.get(f"/batch/{job['job_id']}/results").json()
        assert results["download_url"].startswith(seaweed.endpoint_url) and results["expires_at"]
        got = httpx.get(results["download_url"])  # presigned: no Tollgate key needed
        assert got.status_code == 200
        out = [orjson.loads(x) for x in got.content.splitlines()]
        assert [x["custom_id"] for x in out] == [f"c{i}" for i in range(25)]
        assert all(x["label"] in LABELS for x in out)
        assert c.delete(f"/batch/{job['job_id']}").status_code == 200
        assert httpx.get(results["download_url"]).status_code == 404
