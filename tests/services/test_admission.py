"""tollgate/services/admission.py: what a chat request reserves for its prompt, images included, and a
gateway that refuses an image request the account cannot cover (before: admitted on its text alone)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.support.gateway import Gateway, gateway_config
from tollgate.services.admission import IMAGE_TOKENS, prompt_estimate
from tollgate.simulator import SimServer


def estimate(body: dict[str, Any]) -> int:
    return prompt_estimate(orjson.dumps(body), body)


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}


def test_text_counts_a_token_per_three_bytes_of_the_body() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 3000}]}
    assert estimate(body) == len(orjson.dumps(body)) // 3 + 16


def test_tool_definitions_are_counted_with_the_body() -> None:
    bare = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    assert estimate({**bare, "tools": [tool] * 20}) - estimate(bare) >= len(orjson.dumps([tool] * 20)) // 3


def test_each_image_counts_the_most_a_provider_charges_for_one() -> None:
    text = {"role": "user", "content": [{"type": "text", "text": "what is this?"}]}
    with_images = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            image("https://x.test/a.png"),
            image("https://b"),
        ],
    }
    plain = estimate({"model": "m", "messages": [text]})
    assert estimate({"model": "m", "messages": [with_images]}) >= plain + 2 * IMAGE_TOKENS


def test_an_inline_image_is_counted_as_an_image_not_as_text() -> None:
    data = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + bytes(300_000)).decode()
    body = {"model": "m", "messages": [{"role": "user", "content": [image(data)]}]}
    assert IMAGE_TOKENS < estimate(body) < IMAGE_TOKENS + 100


@pytest.mark.parametrize("content", [None, "text", [1, "x", {"type": "image_url"}]])
def test_odd_content_shapes_do_not_break_the_estimate(content: Any) -> None:
    assert estimate({"model": "m", "messages": [{"role": "user", "content": content}, "junk"]}) > 0


def test_an_image_request_the_balance_cannot_cover_is_refused_at_admission(
    tmp_path: Path, sim: SimServer
) -> None:
    # 0.0005 covers the text (≈ 60 tokens at 0.000001) and 100 output tokens, not an image's 1,600 tokens.
    models = gateway_config(sim.base_url, "sqlite+aiosqlite://")["models"]
    vision = {**models[0], "input_modalities": ["text", "image"]}  # sim-small, taking images
    with Gateway(tmp_path, sim.base_url, sections={"models": [vision, *models[1:]]}) as gateway:
        image_request_refused(gateway)


def image_request_refused(gateway: Gateway) -> None:
    key = gateway.create_key(balance="0.0005")
    client = gateway.client(key)
    content: Any = [{"type": "text", "text": "what is this?"}, image("https://example.test/cat.png")]
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="sim-small", max_tokens=100, messages=[{"role": "user", "content": content}]
        )
    assert info.value.status_code == 402
    text_only = client.chat.completions.create(
        model="sim-small", max_tokens=100, messages=[{"role": "user", "content": "what is this?"}]
    )
    assert text_only.usage is not None
