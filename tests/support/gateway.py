"""A Tollgate gateway wired to the provider simulator, for integration tests."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import yaml

from tests.support.servers import ServerThread, run
from tollgate.accounts.keys import generate_key
from tollgate.app import create_app
from tollgate.settings import load_settings
from tollgate.storage import SqlStorage, UsageRow, open_storage

PRICES = {"prompt": "0.000001", "completion": "0.000002", "input_cache_read": "0.0000005"}


def gateway_config(sim_base_url: str, db_url: str, **server: Any) -> dict[str, Any]:
    return {
        "server": {
            "grace_buffer": "0",
            "usage_flush_interval": 0.02,
            "key_cache_ttl": 0.5,
            "balance_refresh_interval": 0.2,
            **server,
        },
        "database_url": db_url,
        "providers": [
            {"name": "sim", "kind": "openai", "base_url": sim_base_url, "api_key": "sim-key", "timeout": 30},
            {
                "name": "down",
                "kind": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": "x",
                "timeout": 5,
            },
        ],
        "models": [
            {
                "id": "sim-small",
                "name": "Sim Small",
                "hugging_face_id": "org/sim-small",
                "context_length": 4096,
                "max_output_length": 512,
                "pricing": PRICES,
                "quantization": "bf16",
                "supported_features": ["tools", "json_mode"],
                "deployments": [{"provider": "sim", "model": "upstream-small"}],
            },
            {
                "id": "sim-fallback",
                "pricing": PRICES,
                "max_output_length": 512,
                "deployments": [
                    {"provider": "down", "model": "x"},
                    {"provider": "sim", "model": "upstream-b"},
                ],
            },
            {"id": "unreachable", "pricing": PRICES, "deployments": [{"provider": "down", "model": "x"}]},
            {
                "id": "sim-embed",
                "pricing": PRICES,
                "output_modalities": ["embeddings"],
                "deployments": [{"provider": "sim", "model": "upstream-embed"}],
            },
            {
                "id": "sim-embed-fallback",
                "pricing": PRICES,
                "output_modalities": ["embeddings"],
                "deployments": [
                    {"provider": "down", "model": "x"},
                    {"provider": "sim", "model": "upstream-embed"},
                ],
            },
        ],
    }


class Gateway:
    """A running gateway plus direct access to its database."""

    def __init__(
        self,
        tmp: Path,
        sim_base_url: str,
        *,
        sections: dict[str, Any] | None = None,
        db_url: str | None = None,
        **server: Any,
    ) -> None:
        """``sections`` replaces top-level config sections (``providers``, ``models``, ``routing``);
        ``db_url``: another database than a new SQLite file (e.g. a PostgreSQL test database)."""
        self.db_url = db_url or f"sqlite+aiosqlite:///{tmp / 'tollgate.db'}"
        self.config_path = tmp / "tollgate.yaml"
        config = {**gateway_config(sim_base_url, self.db_url, **server), **(sections or {})}
        self.config_path.write_text(yaml.safe_dump(config))
        self.settings = load_settings(str(self.config_path), environ={})
        self.app = create_app(self.settings)  # its state (``app.state``) is the running gateway's
        self.server = ServerThread(self.app)

    def __enter__(self) -> Gateway:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    async def _store(self) -> SqlStorage:
        store = open_storage(self.db_url)
        await store.migrate()
        return store

    def create_key(self, balance: Decimal | str = "10", account: str = "default", **limits: Any) -> str:
        """``limits``: ``tier``, ``rpm``, ``tpm``, ``concurrency`` (any ``generate_key`` setting) of the key."""

        async def go() -> str:
            store = await self._store()
            try:
                acct = await store.ensure_account(account)
                if Decimal(balance):
                    await store.add_balance(acct.id, Decimal(balance))
                new = generate_key(acct.id, "test", **limits)
                await store.insert_key(new.record)
                return new.secret
            finally:
                await store.close()

        return str(run(go()))

    def client(self, key: str, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, **kw)

    def usage_rows(self, expect: int | None = None, timeout: float = 5.0) -> list[UsageRow]:
        """Rows in the database, oldest first; waits until ``expect`` rows are there."""
        deadline = time.monotonic() + timeout
        while True:

            async def go() -> list[UsageRow]:
                store = await self._store()
                try:
                    return list(reversed(await store.list_usage(10_000)))
                finally:
                    await store.close()

            rows: list[UsageRow] = run(go())
            if expect is None or len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def balance(self, account: str = "default") -> Decimal:
        async def go() -> Decimal:
            store = await self._store()
            try:
                acct = await store.find_account(account)
                assert acct is not None
                return acct.balance
            finally:
                await store.close()

        return Decimal(run(go()))
