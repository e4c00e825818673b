"""OpenAI-compatible presets: defaults from config, and each upstream's request quirks."""

from __future__ import annotations

import orjson
import pytest

from tollgate.errors import ConfigError
from tollgate.providers.openai_compat import prepare_body
from tollgate.providers.presets import PRESETS, adapt_body, preset
from tollgate.settings import parse_config

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi", "name": "ann"}], "max_tokens": 9}


def test_every_preset_has_an_http_base_url() -> None:
    assert set(PRESETS) >= {
        "openai",
        "deepseek",
        "moonshot",
        "groq",
        "together",
        "mistral",
        "openrouter",
        "vllm",
        "ollama",
    }
    assert all(p.base_url.startswith(("http://", "https://")) for p in PRESETS.values())


def test_openai_gets_max_completion_tokens() -> None:
    out = adapt_body(BODY, preset("openai"))
    assert out["max_completion_tokens"] == 9 and "max_tokens" not in out


def test_compatible_servers_get_max_tokens_even_when_the_client_sent_the_new_name() -> None:
    out = adapt_body({"model": "m", "messages": [], "max_completion_tokens": 5}, preset("together"))
    assert out == {"model": "m", "messages": [], "max_tokens": 5}


def test_groq_drops_the_fields_it_rejects_and_message_names() -> None:
    body = {**BODY, "logprobs": True, "top_logprobs": 2, "logit_bias": {"1": 2}, "n": 1, "seed": 3}
    out = adapt_body(body, preset("groq"))
    assert {"logprobs", "top_logprobs", "logit_bias"}.isdisjoint(out)
    assert out["n"] == 1 and out["seed"] == 3
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert body["messages"][0]["name"] == "ann", "the caller's body is not modified"


def test_mistral_streams_without_stream_options() -> None:
    payload = orjson.loads(
        prepare_body(
            {**BODY, "stream_options": {"include_usage": True}},
            "mistral-small",
            stream=True,
            quirks=preset("mistral"),
        )
    )
    assert "stream_options" not in payload and payload["model"] == "mistral-small"


def test_generic_upstream_is_asked_for_stream_usage() -> None:
    payload = orjson.loads(prepare_body(BODY, "x", stream=True))
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["max_tokens"] == 9 and payload["messages"][0]["name"] == "ann"


def test_a_preset_supplies_base_url_and_key_variable() -> None:
    from tollgate.settings import Settings

    cfg = parse_config(
        "providers: [{name: ds, preset: deepseek}, {name: claude, kind: anthropic}]\n", "x.yaml"
    )
    assert cfg.providers[0].base_url == "https://api.deepseek.com/v1"
    assert cfg.providers[1].base_url == "https://api.anthropic.com"
    settings = Settings(cfg, source="x.yaml", environ={"DEEPSEEK_API_KEY": "sk-ds"})
    assert settings.provider_keys["ds"] == "sk-ds"


def test_unknown_preset_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"providers\.0\.preset.*unknown preset 'nope'.*deepseek"):
        parse_config("providers: [{name: a, preset: nope}]\n", "x.yaml")
