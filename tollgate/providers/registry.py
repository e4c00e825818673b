"""Provider kinds by name: adding a provider is one module and one line here."""

from __future__ import annotations

from collections.abc import Callable

from tollgate.providers.anthropic.client import AnthropicProvider
from tollgate.providers.base import Provider
from tollgate.providers.gemini.client import GeminiProvider
from tollgate.providers.local import LocalProvider
from tollgate.providers.openai_compat import OpenAICompatProvider
from tollgate.settings import ProviderConfig

Factory = Callable[[ProviderConfig, str | None], Provider]

KINDS: dict[str, Factory] = {
    "openai": OpenAICompatProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "local": LocalProvider,
}


def build_provider(config: ProviderConfig, api_key: str | None) -> Provider:
    factory = KINDS.get(config.kind)
    if factory is None:
        raise ValueError(f"provider kind {config.kind!r} is not available (known: {sorted(KINDS)})")
    return factory(config, api_key)
