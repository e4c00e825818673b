"""Configuration of local providers and of providers that need a key (tollgate/settings.py)."""

from __future__ import annotations

import textwrap

import pytest

from tollgate.errors import ConfigError
from tollgate.settings import Settings, load_settings, parse_config

TWO_PROVIDERS = """
providers:
  - {name: local, kind: local}
  - {name: remote, base_url: "https://up.example/v1", api_key_env: REMOTE_KEY, requires_key: true}
models:
  - id: small
    deployments: [{provider: local, model: smollm2}]
  - id: big
    deployments: [{provider: remote, model: big}]
  - id: either
    deployments: [{provider: remote, model: big}, {provider: local, model: smollm2}]
"""


def settings(environ: dict[str, str]) -> Settings:
    return Settings(parse_config(TWO_PROVIDERS, "t.yaml", environ), source="t.yaml", environ=environ)


def test_a_local_provider_needs_no_base_url_and_has_defaults() -> None:
    local = parse_config(TWO_PROVIDERS, "t.yaml", {}).providers[0]
    assert (local.kind, local.base_url, local.model_path, local.n_ctx, local.max_queue) == (
        "local",
        "",
        None,
        2048,
        64,
    )


def test_remote_providers_still_need_a_base_url() -> None:
    with pytest.raises(ConfigError, match=r"providers\.0\.base_url: Field required"):
        parse_config(textwrap.dedent("providers: [{name: up}]\n"), "t.yaml", {})


def test_a_provider_that_requires_a_key_is_hidden_without_one() -> None:
    config = settings({}).config
    assert [p.name for p in config.providers] == ["local"]
    assert [m.id for m in config.models] == ["small", "either"]
    either = config.models[1]
    assert [d.provider for d in either.deployments] == ["local"], "only the deployments left that can serve"


def test_a_provider_that_requires_a_key_appears_with_it() -> None:
    s = settings({"REMOTE_KEY": "k"})
    assert [p.name for p in s.config.providers] == ["local", "remote"]
    assert [m.id for m in s.config.models] == ["small", "big", "either"]
    assert s.provider_keys["remote"] == "k"


def test_the_bundled_config_serves_the_local_models_and_remote_ones_only_with_keys() -> None:
    offline = load_settings(None, {})
    ids = [m.id for m in offline.config.models]
    assert ids[:2] == ["local/smollm2-135m-instruct", "local/all-minilm-l6-v2"]
    assert "gpt-4o-mini" not in ids
    local = offline.config.models[0]
    assert local.pricing.prompt == 0 and local.pricing.completion == 0
    keyed = load_settings(None, {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"})
    assert {"gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"} <= {m.id for m in keyed.config.models}
