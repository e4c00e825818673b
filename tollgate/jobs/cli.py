"""``tollgate batch``: submit a file as a batch job and follow it, from a shell, over Tollgate's HTTP API.

    tollgate batch submit FILE (--labels a,b,c | --classifier NAME) [--mode multi] [--wait [-o OUT]]
    tollgate batch list | status ID | results ID [-o FILE] | cancel ID | delete ID

Every command takes ``--url`` (the gateway, default ``http://127.0.0.1:8080``), ``--key`` and ``--json``.
Uploads and downloads stream, whatever the file's size; progress bars (rich) go to stderr.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

batch_app = typer.Typer(no_args_is_help=True, help="Submit and follow async batch classification jobs.")

UrlOpt = Annotated[str, typer.Option("--url", help="The gateway's base URL.")]
KeyOpt = Annotated[str, typer.Option("--key", help="An API key of the account.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DEFAULT_URL = "http://127.0.0.1:8080"
BLOCK = 1 << 20


class Api:
    def __init__(self, url: str, key: str) -> None:
        if not key:
            raise typer.BadParameter("--key is required: an API key of the account")
        self.base = url.rstrip("/")
        self.key = key

    def _conn(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return cls(parts.netloc, timeout=600), path

    def request(
        self, method: str, path: str, body: Any = None, stream: Iterator[bytes] | None = None, size: int = 0
    ) -> http.client.HTTPResponse:
        url = path if path.startswith("http") else f"{self.base}/v1{path}"
        conn, target = self._conn(url)
        headers = {"Authorization": f"Bearer {self.key}"}
        if stream is not None:
            headers["Content-Length"] = str(size)
            conn.request(method, target, body=stream, headers=headers)
        else:
            data = None if body is None else json.dumps(body).encode()
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, target, body=data, headers=headers)
        return conn.getresponse()

    def get_presigned(self, url: str) -> http.client.HTTPResponse:
        """A presigned URL of the object store: no Tollgate key."""
        conn, target = self._conn(url)
        conn.request("GET", target)
        return conn.getresponse()

    def json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        res = self.request(method, path, body)
        data: dict[str, Any] = json.loads(res.read() or b"{}")
        if res.status >= 400:
            typer.echo(f"error {res.status}: {data.get('message', data)}", err=True)
            raise typer.Exit(1)
        return data


def _emit(as_json: bool, data: Any, text: str) -> None:
    typer.echo(json.dumps(data) if as_json else text)


def _line(job: dict[str, Any]) -> str:
    total = job["requests_total"] if job["requests_total"] is not None else "?"
    done = job["requests_completed"] + job["requests_failed"]
    failed = job["requests_failed"]
    return f"{job['job_id']}  {job['status']:<10}  {done}/{total} lines  {failed} failed  cost {job['cost']}"


def _progress() -> Progress:
    return Progress(
        *Progress.get_default_columns()[:-1], DownloadColumn(), TransferSpeedColumn(), transient=True
    )


def _upload(api: Api, job: dict[str, Any], path: Path) -> None:
    size = path.stat().st_size
    if job["upload_method"] != "PUT":
        typer.echo("this gateway stores batch files in an object store; uploading through Tollgate", err=True)
    with _progress() as bar, path.open("rb") as f:
        task = bar.add_task("upload", total=size)

        def blocks() -> Iterator[bytes]:
            while block := f.read(BLOCK):
                bar.advance(task, len(block))
                yield block

        res = api.request("PUT", f"/batch/{job['job_id']}/input", stream=blocks(), size=size)
        body = json.loads(res.read() or b"{}")
    if res.status >= 400:
        typer.echo(f"upload failed ({res.status}): {body.get('message', body)}", err=True)
        raise typer.Exit(1)


def _download(api: Api, job_id: str, out: Path | None) -> int:
    info = api.json("GET", f"/batch/{job_id}/results")
    url = info["download_url"]
    res = api.request("GET", url) if url.startswith(api.base) else api.get_presigned(url)
    if res.status >= 400:
        typer.echo(f"download failed ({res.status})", err=True)
        raise typer.Exit(1)
    sink = out.open("wb") if out is not None else sys.stdout.buffer
    size = 0
    try:
        # A progress bar only when writing to a file: stdout may be a pipe into the next command.
        with _progress() if out is not None else contextlib.nullcontext() as bar:
            total = int(res.headers.get("Content-Length") or 0) or None
            task = bar.add_task("download", total=total) if bar is not None else None
            while block := res.read(BLOCK):
                sink.write(block)
                size += len(block)
                if bar is not None and task is not None:
                    bar.advance(task, len(block))
    finally:
        if out is not None:
            sink.close()
    return size


@batch_app.command("submit")
def submit(
    file: Path,
    labels: Annotated[str | None, typer.Option(help="Comma-separated labels.")] = None,
    classifier: Annotated[str | None, typer.Option(help="A saved classifier (name or name@vN).")] = None,
    mode: Annotated[str, typer.Option(help="single or multi.")] = "single",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job and download its results.")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Results file (with --wait).")] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a job for FILE (NDJSON, one {"text": ...} a line), upload it, start it."""
    if (labels is None) == (classifier is None):
        raise typer.BadParameter("give --labels or --classifier (one of them)")
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file")
    api = Api(url, key)
    spec: dict[str, Any] = {"mode": mode}
    if labels is not None:
        spec["labels"] = [label.strip() for label in labels.split(",") if label.strip()]
    else:
        spec["classifier"] = classifier
    job = api.json("POST", "/batch", spec)
    _upload(api, job, file)
    job = api.json("POST", f"/batch/{job['job_id']}/start")
    if not wait:
        _emit(as_json, job, _line(job))
        return
    with Progress(*Progress.get_default_columns(), transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("classify", total=None)
        while job["status"] == "processing":
            time.sleep(1)
            job = api.json("GET", f"/batch/{job['job_id']}")
            bar.update(
                task,
                total=job["requests_total"],
                completed=job["requests_completed"] + job["requests_failed"],
            )
    if job["status"] != "completed":
        _emit(as_json, job, _line(job) + (f"\n{job['error']['message']}" if job.get("error") else ""))
        raise typer.Exit(1)
    _download(api, job["job_id"], output)
    if output is not None:
        _emit(as_json, job, _line(job) + f"\nresults: {output}")


@batch_app.command("list")
def list_jobs(url: UrlOpt = DEFAULT_URL, key: KeyOpt = "", as_json: JsonOpt = False) -> None:
    """The account's jobs, newest first (the latest 100)."""
    page = Api(url, key).json("GET", "/batch?limit=100")
    _emit(as_json, page["data"], "\n".join(_line(j) for j in page["data"]) or "no batch jobs")


@batch_app.command("status")
def status(job_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = "", as_json: JsonOpt = False) -> None:
    job = Api(url, key).json("GET", f"/batch/{job_id}")
    _emit(as_json, job, _line(job))


@batch_app.command("results")
def results(
    job_id: str,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default: stdout).")] = None,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = "",
) -> None:
    """Download a completed job's results (NDJSON, one line per input line, in input order)."""
    _download(Api(url, key), job_id, output)


@batch_app.command("cancel")
def cancel(job_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = "", as_json: JsonOpt = False) -> None:
    job = Api(url, key).json("POST", f"/batch/{job_id}/cancel")
    _emit(as_json, job, _line(job))


@batch_app.command("delete")
def delete(job_id: str, url: UrlOpt = DEFAULT_URL, key: KeyOpt = "", as_json: JsonOpt = False) -> None:
    out = Api(url, key).json("DELETE", f"/batch/{job_id}")
    _emit(as_json, out, f"deleted {job_id}")
