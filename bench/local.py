"""Local models benchmark: SmolLM2-135M through Tollgate (``kind: local``) vs the bare llama-cpp-python model.

    .venv/bin/python bench/local.py [--runs 5] [--max-tokens 128]

1. Bare: the bundled GGUF loaded with llama-cpp-python in this process, ``create_chat_completion`` streamed.
2. Through Tollgate: a gateway process on a config with the local chat model and local embeddings, streamed
   over HTTP (SSE) by an aiohttp client, the same prompt, greedy sampling.
For both: first-token latency (p50) and decode speed (completion tokens / time from first to last token), in
the same run, runs alternating (never concurrent: they would share the cores). Then the gateway's RSS
after it served a chat request and an embeddings request (both local models loaded), and idle before.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summarize(name: str, runs: list[tuple[float, float, int]]) -> tuple[float, float]:
    ttft = statistics.median(r[0] for r in runs)
    speed = statistics.median(r[2] / r[1] for r in runs if r[1] > 0)
    tokens = statistics.median(r[2] for r in runs)
    print(
        f"{name:<22} first token p50 {ttft * 1000:7.1f} ms   decode {speed:6.1f} tok/s   ({tokens:.0f} tokens)"
    )
    return ttft, speed


def bare_run(llm: Any, max_tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for chunk in llm.create_chat_completion(
        messages=MESSAGES, max_tokens=max_tokens, temperature=0, stream=True
    ):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            first = first or last
            count += 1
    return first - start, last - first, count - 1


async def gateway_run(url: str, key: str, max_tokens: int) -> tuple[float, float, int]:
    body = {
        "model": "local/smollm2-135m-instruct",
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    # no-store: greedy requests are cacheable, and a cache hit would measure the cache, not the model.
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-store"}
    start = time.perf_counter()
    first = last = 0.0
    completion = 0
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as resp:
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    completion = chunk["usage"]["completion_tokens"]
                elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    last = time.perf_counter()
                    first = first or last
    return first - start, last - first, completion - 1


async def embed(url: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        body = {"model": "local/all-minilm-l6-v2", "input": ["warm up the embedder"] * 8}
        async with session.post(url + "/v1/embeddings", json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def start_gateway(tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    config: dict[str, Any] = {
        "server": {"port": port},
        "database_url": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        "providers": [{"name": "local", "kind": "local"}],
        "models": [
            {"id": "local/smollm2-135m-instruct", "deployments": [{"provider": "local", "model": "smollm2"}]},
            {
                "id": "local/all-minilm-l6-v2",
                "deployments": [{"provider": "local", "model": "all-minilm-l6-v2"}],
            },
        ],
    }
    cfg = tmp / "bench.yaml"
    cfg.write_text(yaml.safe_dump(config))
    tg = [sys.executable, "-m", "tollgate"]
    key = json.loads(subprocess.check_output([*tg, "keys", "create", "--config", str(cfg), "--json"]))["key"]
    proc = subprocess.Popen(
        [*tg, "serve", "--config", str(cfg), "--log-level", "warning"], stdout=subprocess.DEVNULL, cwd=tmp
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start") from None
            time.sleep(0.1)
    return proc, url, key


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    from llama_cpp import Llama

    from tollgate.local.bundled import chat_model_path

    llm = Llama(model_path=str(chat_model_path()), n_ctx=2048, verbose=False)
    bare_runs: list[tuple[float, float, int]] = []
    gw_runs: list[tuple[float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = start_gateway(Path(tmp))
        try:
            idle = rss_mb(proc.pid)
            # Alternate bare and gateway runs so that a busy machine slows both alike; the first of each
            # warms up (the gateway loads its model on its first request).
            for i in range(args.runs + 1):
                b = bare_run(llm, args.max_tokens)
                g = asyncio.run(gateway_run(url, key, args.max_tokens))
                if i:
                    bare_runs.append(b)
                    gw_runs.append(g)
            chat_rss = rss_mb(proc.pid)
            started = time.perf_counter()
            asyncio.run(embed(url, key))
            first_embed = time.perf_counter() - started
            both_rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print(f"SmolLM2-135M-Instruct Q4_1, greedy, max_tokens {args.max_tokens}, median of {args.runs} runs")
    b_ttft, b_speed = summarize("bare llama-cpp-python", bare_runs)
    g_ttft, g_speed = summarize("through Tollgate (SSE)", gw_runs)
    print(
        f"ratio                  first token {g_ttft / b_ttft:5.2f}x         decode {g_speed / b_speed:5.2f}x"
    )
    print(
        f"gateway RSS: idle {idle:.0f} MB, with the chat model {chat_rss:.0f} MB, "
        f"with both local models {both_rss:.0f} MB (first embeddings request {first_embed:.1f} s, torch import)"
    )


if __name__ == "__main__":
    main()
