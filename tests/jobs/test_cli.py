"""``tollgate batch`` (``jobs/cli.py``) against a running gateway: submit with --wait downloads the results;
list, status, results, cancel, delete; the gateway's refusals come back as the command's error."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from typer.testing import CliRunner

from tests.support.gateway import Gateway
from tollgate.cli import app
from tollgate.simulator import SimServer


def test_submit_wait_then_list_status_results_and_delete(tmp_path: Path, sim: SimServer) -> None:
    batch = {"path": str(tmp_path / "files"), "poll_interval": 0.1}
    with Gateway(tmp_path, sim.base_url, sections={"batch": batch}) as gw:
        key = gw.create_key()
        conn = ["--url", gw.server.url, "--key", key]
        infile, outfile = tmp_path / "in.ndjson", tmp_path / "out.ndjson"
        texts = ["Refund my double charge", "The app crashes on start", "My parcel is lost"]
        infile.write_bytes(
            b"".join(orjson.dumps({"text": t, "id": i}) + b"\n" for i, t in enumerate(texts * 4))
        )
        runner = CliRunner()
        args = [
            "batch",
            "submit",
            str(infile),
            "--labels",
            "billing,technical,shipping",
            "--wait",
            "-o",
            str(outfile),
        ]
        done = runner.invoke(app, [*args, *conn, "--json"])
        assert done.exit_code == 0, done.output
        job = json.loads(done.stdout)
        assert job["status"] == "completed" and job["requests_completed"] == 12
        results = [orjson.loads(x) for x in outfile.read_bytes().splitlines()]
        assert [r["id"] for r in results] == list(range(12)) and all("label" in r for r in results)

        listed = runner.invoke(app, ["batch", "list", *conn, "--json"])
        assert [j["job_id"] for j in json.loads(listed.stdout)] == [job["job_id"]]
        status = runner.invoke(app, ["batch", "status", job["job_id"], *conn])
        assert status.stdout.startswith(f"{job['job_id']}  completed   12/12 lines  0 failed")
        again = runner.invoke(app, ["batch", "results", job["job_id"], *conn])
        assert again.exit_code == 0 and again.stdout_bytes == outfile.read_bytes()
        cancel = runner.invoke(app, ["batch", "cancel", job["job_id"], *conn])
        assert (
            cancel.exit_code == 1
            and "error 409: The job is completed; it cannot be cancelled" in cancel.output
        )
        assert runner.invoke(app, ["batch", "delete", job["job_id"], *conn]).exit_code == 0
        gone = runner.invoke(app, ["batch", "status", job["job_id"], *conn])
        assert gone.exit_code == 1 and f"error 404: No batch job '{job['job_id']}'" in gone.output

        both = runner.invoke(
            app, ["batch", "submit", str(infile), "--labels", "a", "--classifier", "x", *conn]
        )
        assert both.exit_code == 2 and "give --labels or --classifier" in both.output
