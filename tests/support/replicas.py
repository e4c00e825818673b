"""Several ``tollgate serve`` processes sharing one PostgreSQL database and one Redis, for the scale-out
tests. Each test module gets its own database and Redis prefix, removed afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tests.support.gateway import gateway_config
from tests.support.servers import run
from tollgate.accounts.keys import generate_key
from tollgate.storage import AccountRecord, SqlStorage, UsageRow, open_storage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One gateway process."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.port = free_port()
        self._log = log_path.open("wb")
        exe = Path(sys.executable).with_name("tollgate")
        self.proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                "--config",
                str(config_path),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica exited with {self.proc.returncode}; see {self._log.name}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica did not start in {timeout} s; see {self._log.name}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM: the gateway flushes its usage rows before it exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Cluster:
    """``n`` replicas with one config: PostgreSQL at ``db_url``, Redis at ``redis_url`` under ``prefix``."""

    def __init__(
        self,
        tmp: Path,
        sim_base_url: str,
        db_url: str,
        redis_url: str,
        prefix: str,
        n: int = 2,
        **server: Any,
    ) -> None:
        self.db_url = db_url
        self.prefix = prefix
        config = gateway_config(sim_base_url, db_url, redis_prefix=prefix, **server)
        config["redis_url"] = redis_url
        self.config_path = tmp / "replicas.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.replicas = [Replica(self.config_path, tmp / f"replica{i}.log") for i in range(n)]

    def __enter__(self) -> Cluster:
        try:
            for r in self.replicas:
                r.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def _with_store(self, fn: Any) -> Any:
        async def go() -> Any:
            store: SqlStorage = open_storage(self.db_url)
            try:
                return await fn(store)
            finally:
                await store.close()

        return run(go())

    def create_key(self, balance: str, account: str, **limits: Any) -> str:
        async def go(store: SqlStorage) -> str:
            acct = await store.ensure_account(account)
            if Decimal(balance):
                await store.add_balance(acct.id, Decimal(balance))
            new = generate_key(acct.id, "test", **limits)
            await store.insert_key(new.record)
            return new.secret

        return str(self._with_store(go))

    def account(self, name: str) -> AccountRecord:
        async def go(store: SqlStorage) -> AccountRecord:
            acct = await store.find_account(name)
            assert acct is not None
            return acct

        result: AccountRecord = self._with_store(go)
        return result

    def wait_for_rows(self, account_id: str, n: int, timeout: float = 15) -> list[UsageRow]:
        """The account's usage rows, once there are ``n`` (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.usage_rows() if r.account_id == account_id]
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    def usage_rows(self) -> list[UsageRow]:
        async def go(store: SqlStorage) -> list[UsageRow]:
            return await store.list_usage(1_000_000)

        rows: list[UsageRow] = self._with_store(go)
        return rows
