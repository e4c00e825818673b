"""A provider with ``proxy:``: the gateway's upstream calls, JSON and streamed, go through that proxy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai

from tests.support.gateway import Gateway, gateway_config
from tests.support.proxy import LoopbackProxy, proxy_thread
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "hi"}]


@contextmanager
def gateway_via_proxy(
    tmp_path: Path, sim: SimServer, credentials: str
) -> Iterator[tuple[Gateway, LoopbackProxy, str]]:
    """A gateway whose simulator provider goes through a loopback proxy that wants ``gw:pw``."""
    with proxy_thread(password="gw:pw") as (proxy, where):
        providers = gateway_config(sim.base_url, "")["providers"]
        providers[0]["proxy"] = f"http://{credentials}@{where}"
        with Gateway(tmp_path, sim.base_url, sections={"providers": providers}) as gw:
            yield gw, proxy, where


def test_chat_json_and_stream_go_through_the_providers_proxy(tmp_path: Path, sim: SimServer) -> None:
    with gateway_via_proxy(tmp_path, sim, "gw:pw") as (gw, proxy, _):
        client = gw.client(gw.create_key())
        reply = client.chat.completions.create(model="sim-small", messages=USER)
        chunks = list(client.chat.completions.create(model="sim-small", messages=USER, stream=True))
        assert reply.usage is not None and chunks[-1].usage is not None
        rows = gw.usage_rows(expect=2)
        assert {row.status for row in rows} == {200}
        targets = {head[0] for head in proxy.heads}
    assert targets == {f"POST {sim.base_url}/chat/completions HTTP/1.1"}


def test_a_proxy_refusing_the_gateway_is_a_503_naming_the_proxy(tmp_path: Path, sim: SimServer) -> None:
    with gateway_via_proxy(tmp_path, sim, "gw:wrong") as (gw, _, where):
        client = gw.client(gw.create_key())
        try:
            client.chat.completions.create(model="sim-small", messages=USER)
            raise AssertionError("the request went through a proxy that refused it")
        except openai.APIStatusError as exc:
            status, message = exc.status_code, exc.message
        (row,) = gw.usage_rows(expect=1)
    assert status == 503 and row.status == 503
    assert f"the proxy {where} refused the request: 407" in message
