"""A ``tollgate serve`` child process (so a test or a benchmark can SIGKILL a real gateway) and the key it is
called with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx

from tollgate.accounts.keys import generate_key
from tollgate.storage import open_storage

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(config: Path, port: int, log: Path, timeout: float = 60) -> subprocess.Popen[bytes]:
    """``tollgate serve`` from this tree, its output appended to ``log``; returned once ``/healthz`` answers
    200. Killed, and ``RuntimeError``, when it exits or is not up within ``timeout`` seconds."""
    code = "import sys; from tollgate.cli import main; sys.argv = ['tollgate', *sys.argv[1:]]; main()"
    args = [sys.executable, "-c", code, "serve", "--config", str(config), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tollgate serve did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)


async def funded_key(db_url: str, balance: Decimal, name: str) -> str:
    """Migrate the database at ``db_url``, give its default account ``balance`` and a new key; the key."""
    store = open_storage(db_url)
    try:
        await store.migrate()
        account = await store.ensure_account("default")
        await store.add_balance(account.id, balance)
        key = generate_key(account.id, name)
        await store.insert_key(key.record)
        return key.secret
    finally:
        await store.close()
