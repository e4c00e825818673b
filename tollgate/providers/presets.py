"""Known OpenAI-compatible upstreams: where they live, which key they read, and how they differ.

Presets are data. ``preset: deepseek`` in a provider entry supplies ``base_url`` and ``api_key_env`` (both can
still be overridden) and the request quirks applied by ``adapt_body``:

- ``max_tokens_field``: OpenAI deprecated ``max_tokens`` for ``max_completion_tokens`` (its reasoning models
  reject the old name); most compatible servers only know ``max_tokens``. The client may send either; the
  upstream gets the one it understands.
- ``stream_usage``: whether the upstream accepts ``stream_options.include_usage``. Where it does not, the
  option is not sent (Mistral reports usage in its last chunk anyway; otherwise Tollgate counts locally).
- ``unsupported``: fields the upstream answers with a 400 (Groq documents ``logprobs``, ``logit_bias``,
  ``top_logprobs``, ``messages[].name`` and ``n`` other than 1); they are removed rather than failing.
- ``responses_api``: the upstream serves OpenAI's Responses API at ``{base_url}/responses`` (OpenAI; OpenRouter
  documents it at ``/api/v1/responses``), so ``POST /v1/responses`` is forwarded natively instead of being
  translated onto chat completions. A provider entry's own ``responses_api`` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Preset:
    base_url: str
    api_key_env: str | None
    max_tokens_field: str = "max_tokens"
    stream_usage: bool = True
    unsupported: frozenset[str] = field(default_factory=frozenset)
    strip_message_names: bool = False
    responses_api: bool = False


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        max_tokens_field="max_completion_tokens",
        responses_api=True,
    ),
    # DeepSeek streams reasoning in ``delta.reasoning_content`` and reports cache hits as
    # ``prompt_cache_hit_tokens`` (both read by the generic OpenAI adapter).
    "deepseek": Preset("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "moonshot": Preset("https://api.moonshot.ai/v1", "MOONSHOT_API_KEY"),
    "groq": Preset(
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        unsupported=frozenset({"logprobs", "top_logprobs", "logit_bias", "n"}),
        strip_message_names=True,
    ),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "mistral": Preset("https://api.mistral.ai/v1", "MISTRAL_API_KEY", stream_usage=False),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", responses_api=True),
    "vllm": Preset("http://127.0.0.1:8000/v1", None),
    "ollama": Preset("http://127.0.0.1:11434/v1", None),
}

GENERIC = Preset("", None)


def preset(name: str | None) -> Preset:
    if name is None:
        return GENERIC
    found = PRESETS.get(name)
    if found is None:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return found


def adapt_body(body: dict[str, Any], p: Preset) -> dict[str, Any]:
    """A copy of ``body`` with the preset's quirks applied (the caller's dict is not changed)."""
    out = dict(body)
    other = "max_completion_tokens" if p.max_tokens_field == "max_tokens" else "max_tokens"
    if other in out:
        value = out.pop(other)
        out.setdefault(p.max_tokens_field, value)
    for name in p.unsupported:
        if name == "n" and out.get("n") in (None, 1):
            continue
        out.pop(name, None)
    if p.strip_message_names and isinstance(out.get("messages"), list):
        out["messages"] = [
            {k: v for k, v in m.items() if k != "name"} if isinstance(m, dict) and "name" in m else m
            for m in out["messages"]
        ]
    return out
