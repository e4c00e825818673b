"""End to end against real models, no simulator: llama-cpp-python's own OpenAI-compatible server as a
``kind: openai`` upstream, and the same GGUF in process as ``kind: local``, driven with the openai SDK.

llama-cpp-python's server ignores ``stream_options.include_usage``: Tollgate must still end every stream with
a usage chunk and bill it (counted locally, marked estimated). One server, one model load, per session.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.support.gateway import PRICES, Gateway
from tests.support.servers import ServerThread
from tollgate.app import create_app
from tollgate.local.bundled import installed
from tollgate.settings import load_settings
from tollgate.tokens import count_messages

pytest.importorskip("llama_cpp")

MSGS: list[Any] = [{"role": "user", "content": "What is 2+2?"}]
REMOTE = "llama-server/smollm2"
LOCAL = "local/smollm2-135m-instruct"
EMBED = "local/all-minilm-l6-v2"
ZERO = {"prompt": "0", "completion": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    from tollgate.local.bundled import chat_model_path

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(chat_model_path()), "--host", "127.0.0.1"]
        + ["--port", str(port), "--n_ctx", "512", "--verbose", "false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RealGateway(Gateway):
    """The test gateway, configured with the llama server and the in-process model instead of the simulator."""

    def __init__(self, tmp: Path, llama_url: str) -> None:
        self.db_url = f"sqlite+aiosqlite:///{tmp / 'tollgate.db'}"
        self.config_path = tmp / "tollgate.yaml"
        config = {
            "server": {"usage_flush_interval": 0.02, "key_cache_ttl": 0.5, "balance_refresh_interval": 0.2},
            "database_url": self.db_url,
            "providers": [
                {"name": "llama", "kind": "openai", "base_url": llama_url, "api_key": "none", "timeout": 60},
                {"name": "local", "kind": "local", "n_ctx": 512},
            ],
            "models": [
                {
                    "id": REMOTE,
                    "pricing": PRICES,
                    "chat_template": "chatml",
                    "default_system_prompt": SMOLLM_SYSTEM,
                    "deployments": [{"provider": "llama", "model": "smollm2"}],
                },
                {"id": LOCAL, "pricing": ZERO, "deployments": [{"provider": "local", "model": "smollm2"}]},
                {
                    "id": EMBED,
                    "pricing": ZERO,
                    "output_modalities": ["embeddings"],
                    "deployments": [{"provider": "local", "model": "all-minilm-l6-v2"}],
                },
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config))
        self.settings = load_settings(str(self.config_path), environ={})
        self.server = ServerThread(create_app(self.settings))


@pytest.fixture
def real(tmp_path: Path, llama_server: str) -> Iterator[RealGateway]:
    with RealGateway(tmp_path, llama_server) as gw:
        yield gw


SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # its template's


def ask(client: openai.OpenAI, model: str, **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=MSGS, temperature=0, **kw)


def test_json_through_the_llama_server_is_billed_on_its_usage(real: RealGateway) -> None:
    client = real.client(real.create_key())
    resp = ask(client, REMOTE, max_tokens=5)
    assert resp.model == "smollm2"
    assert resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 5
    (row,) = real.usage_rows(expect=1)
    assert row.status == 200 and row.provider == "llama" and not row.estimated
    assert (row.prompt_tokens, row.completion_tokens) == (resp.usage.prompt_tokens, 5)
    assert row.cost == Decimal(PRICES["prompt"]) * row.prompt_tokens + Decimal(PRICES["completion"]) * 5


def test_stream_through_the_llama_server_still_ends_with_usage(real: RealGateway) -> None:
    client = real.client(real.create_key())
    chunks = list(ask(client, REMOTE, max_tokens=6, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    final = chunks[-1]
    assert final.choices[0].finish_reason == "length" and final.usage is not None, (
        "Tollgate adds the usage the server left out, on the finish chunk"
    )
    assert final.usage.completion_tokens > 0
    (row,) = real.usage_rows(expect=1)
    assert row.status == 200 and row.stream and row.estimated
    assert row.completion_tokens == final.usage.completion_tokens > 0
    assert row.cost > 0


def test_stop_and_max_tokens_reach_the_llama_server(real: RealGateway) -> None:
    client = real.client(real.create_key())
    plain = ask(client, REMOTE, max_tokens=8).choices[0].message.content
    stop = plain.split()[2]
    stopped = ask(client, REMOTE, max_tokens=8, stop=[stop]).choices[0]
    assert stopped.finish_reason == "stop"
    assert stop not in (stopped.message.content or "")
    short = ask(client, REMOTE, max_tokens=2)
    assert short.usage is not None and short.usage.completion_tokens == 2


def test_in_process_model_answers_json_and_streams_with_exact_usage(real: RealGateway) -> None:
    client = real.client(real.create_key(balance="0"))
    resp = ask(client, LOCAL, max_tokens=4)
    assert resp.choices[0].message.content and resp.usage is not None
    assert resp.usage.completion_tokens == 4
    chunks = list(ask(client, LOCAL, max_tokens=4, stream=True, stop=["\n\n"]))
    assert chunks[-1].choices[0].finish_reason and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    rows = real.usage_rows(expect=2)
    assert [(r.provider, r.stream, r.estimated) for r in rows] == [
        ("local", False, False),
        ("local", True, False),
    ]
    assert all(r.cost == 0 and r.completion_tokens == 4 for r in rows), "a free model needs no balance"


def test_local_embeddings_through_the_sdk(real: RealGateway) -> None:
    if not installed("sentence_transformers"):
        pytest.skip("the [local] extra is not installed")
    client = real.client(real.create_key(balance="0"))
    resp = client.embeddings.create(model=EMBED, input=["hello world", "foo"])  # the SDK asks for base64
    assert [len(d.embedding) for d in resp.data] == [384, 384]
    assert abs(sum(x * x for x in resp.data[0].embedding) - 1) < 1e-4
    assert resp.usage.prompt_tokens == 7
    floats = client.embeddings.create(model=EMBED, input="hello world", encoding_format="float")
    assert (
        max(abs(a - b) for a, b in zip(floats.data[0].embedding, resp.data[0].embedding, strict=True)) < 1e-6
    )
    rows = real.usage_rows(expect=2)
    assert [(r.endpoint, r.status, r.prompt_tokens, r.estimated) for r in rows] == [
        ("embeddings", 200, 7, False),
        ("embeddings", 200, 4, False),
    ]


def test_a_client_leaving_a_local_stream_stops_the_model_and_is_billed_exactly(real: RealGateway) -> None:
    from tollgate.local.bundled import chat_model_path
    from tollgate.providers.local.engine import get_engine

    client = real.client(real.create_key(balance="0"))
    stream = client.chat.completions.create(
        model=LOCAL, messages=MSGS, max_tokens=400, temperature=0.9, stream=True
    )
    for i, _chunk in enumerate(stream):
        if i == 3:
            break
    stream.close()
    (row,) = real.usage_rows(expect=1)
    assert row.status == 499 and row.error_code == "CLIENT_DISCONNECTED"
    assert not row.estimated and row.prompt_tokens > 0 and 0 < row.completion_tokens < 400
    engine = get_engine(str(chat_model_path()), 512)
    deadline = time.monotonic() + 5
    while engine.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.pending == 0, "the generation stopped with the client"


def test_the_estimated_prompt_counts_the_chat_templates_framing(real: RealGateway) -> None:
    client = real.client(real.create_key())
    exact = ask(client, REMOTE, max_tokens=1).usage.prompt_tokens  # the server's own count (JSON)
    chunks = list(ask(client, REMOTE, max_tokens=1, stream=True))  # the server leaves usage out here
    estimated = chunks[-1].usage.prompt_tokens
    plain = count_messages(MSGS)  # OpenAI's framing, no default system prompt
    assert abs(estimated - exact) <= 3 < abs(plain - exact), (estimated, exact, plain)
