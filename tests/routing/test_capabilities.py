"""The catalogue enforced: requests a model's catalogue entry cannot serve are refused with a 400 saying why,
with the official SDKs against the gateway and its simulator."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
import pytest

from tests.support.gateway import PRICES, Gateway, gateway_config
from tollgate.simulator import SimServer

USER = [{"role": "user", "content": "hello"}]
IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]


def refused(exc: pytest.ExceptionInfo[openai.BadRequestError]) -> dict[str, object]:
    body = exc.value.body
    assert isinstance(body, dict)
    return body


def test_chat_on_an_embeddings_model_is_refused_and_not_billed(gateway: Gateway, sim: SimServer) -> None:
    key = gateway.create_key()
    before = len(sim.requests())
    with pytest.raises(openai.BadRequestError) as exc:
        gateway.client(key).chat.completions.create(model="sim-embed", messages=USER)
    err = refused(exc)
    assert err["param"] == "model" and err["code"] == "MODEL_CAPABILITY"
    assert "does not generate text" in str(err["message"]) and "/v1/embeddings" in str(err["message"])
    assert len(sim.requests()) == before
    (row,) = gateway.usage_rows(expect=1)
    assert (row.status, row.cost) == (400, 0)


def test_embeddings_on_a_chat_model_is_refused(gateway: Gateway) -> None:
    key = gateway.create_key()
    with pytest.raises(openai.BadRequestError) as exc:
        gateway.client(key).embeddings.create(model="sim-small", input="hi")
    assert "not an embeddings model" in str(refused(exc)["message"])


@pytest.mark.parametrize("stream", [False, True])
def test_an_image_to_a_text_only_model_is_refused(gateway: Gateway, stream: bool) -> None:
    key = gateway.create_key()
    with pytest.raises(openai.BadRequestError) as exc:
        gateway.client(key).chat.completions.create(model="sim-small", messages=IMAGE, stream=stream)  # type: ignore[arg-type]
    err = refused(exc)
    assert err["param"] == "messages" and "does not accept image input" in str(err["message"])


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_above_the_models_maximum_output_is_refused(gateway: Gateway, field: str) -> None:
    key = gateway.create_key()
    with pytest.raises(openai.BadRequestError) as exc:
        gateway.client(key).chat.completions.create(model="sim-small", messages=USER, **{field: 100_000})  # type: ignore[call-overload]
    err = refused(exc)
    assert err["param"] == field and "at most 512" in str(err["message"])
    ok = gateway.client(key).chat.completions.create(model="sim-small", messages=USER, **{field: 512})  # type: ignore[call-overload]
    assert ok.choices[0].message.content


def test_messages_max_tokens_above_the_maximum_is_an_anthropic_400(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.server.url, api_key=gateway.create_key(), max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(
            model="sim-small", max_tokens=4096, messages=[{"role": "user", "content": "hi"}]
        )
    assert "at most 512" in str(exc.value)


def test_a_vision_model_gets_the_image_and_an_unfit_fallback_is_skipped(
    tmp_path: Path, sim: SimServer
) -> None:
    config = gateway_config(sim.base_url, "")
    models = [
        {
            "id": "vision",
            "pricing": PRICES,
            "input_modalities": ["text", "image"],
            "deployments": [{"provider": "sim", "model": "upstream-vision"}],
        },
        {
            "id": "text-only",
            "pricing": PRICES,
            "deployments": [{"provider": "sim", "model": "upstream-text"}],
        },
    ]
    with Gateway(tmp_path, sim.base_url, sections={"providers": config["providers"], "models": models}) as gw:
        client = gw.client(gw.create_key())
        resp = client.chat.completions.create(model="vision", messages=IMAGE)  # type: ignore[arg-type]
        assert resp.choices[0].message.content
        # text-only is named as a fallback but cannot take the image: the plan keeps the vision model only.
        raw = client.chat.completions.with_raw_response.create(
            model="text-only",
            messages=IMAGE,
            extra_body={"models": ["text-only", "vision"]},  # type: ignore[arg-type]
        )
        assert raw.headers["x-tollgate-upstream-model"] == "upstream-vision"
