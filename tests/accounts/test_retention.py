"""tollgate/accounts/retention.py: logged bodies past their retention window are purged on a schedule,
by a running gateway, while younger ones stay."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.gateway import Gateway
from tests.support.memory_storage import MemoryStorage
from tests.support.servers import run
from tollgate.accounts.retention import RetentionPurger
from tollgate.simulator import SimServer
from tollgate.storage.base import RequestLog
from tollgate.storage.tables import request_logs

DAY = 86_400


def logged(gw: Gateway) -> dict[str, str | None]:
    """request_id → logged input, straight from the gateway's database."""

    async def go() -> dict[str, str | None]:
        store = await gw._store()
        try:
            async with store.engine.connect() as conn:
                return {r.request_id: r.input for r in (await conn.execute(request_logs.select())).all()}
        finally:
            await store.close()

    result: dict[str, str | None] = run(go())
    return result


def write_log(gw: Gateway, log: RequestLog) -> None:
    async def go() -> None:
        store = await gw._store()
        try:
            await store.write_logs([log])
        finally:
            await store.close()

    run(go())


def test_the_gateway_purges_expired_bodies_on_its_schedule(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url, log_purge_interval=0.05) as gw:
        owner = gw.create_key(manager=True)
        made = httpx.post(
            gw.base_url + "/keys",
            headers={"Authorization": f"Bearer {owner}"},
            json={"log_inputs": True, "retention_days": 1},
            timeout=30,
        )
        r = httpx.post(
            gw.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {made.json()['key']}"},
            json={
                "model": "sim-small",
                "messages": [{"role": "user", "content": "keep me"}],
                "max_tokens": 4,
            },
            timeout=30,
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        while not logged(gw):
            assert time.monotonic() < deadline, "the request's body was never logged"
            time.sleep(0.05)
        now = time.time()
        write_log(gw, RequestLog("req_old", None, None, now - 3 * DAY, now - 2 * DAY, input="too old"))
        while "req_old" in (left := logged(gw)):
            assert time.monotonic() < deadline + 5, "the expired body was not purged"
            time.sleep(0.05)
        assert len(left) == 1 and "keep me" in str(next(iter(left.values()))), "the fresh body stays"


async def test_run_once_purges_batch_after_batch_until_nothing_is_left() -> None:
    calls: list[int] = []

    class Counting(MemoryStorage):
        remaining = 2500

        async def purge_logs(self, now: float, batch: int = 1000) -> int:
            n = min(batch, self.remaining)
            self.remaining -= n
            calls.append(n)
            return n

    purger = RetentionPurger(Counting(), interval=60, batch=1000)
    assert await purger.run_once() == 2500
    assert calls == [1000, 1000, 500]
    assert purger.purged == 2500
