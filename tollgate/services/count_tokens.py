"""Token counting for Anthropic Messages requests (``POST /v1/messages/count_tokens``):
authenticate → validate → route → count.

Counting is free (Anthropic does not bill it either), so it is not a pipeline request: nothing is admitted
(no rate limit, no reservation) and nothing is settled (no usage row, not even for a refused request).
The request is validated by the Messages ingress (the same 400s as ``POST /v1/messages``) and routed like
a chat request; the first target of the plan decides who counts:

* an Anthropic-kind upstream is asked (``count_tokens`` with its own model name) and its figure returned,
  exact; its errors reach the client as any upstream error would, without trying other targets;
* any other upstream has no such endpoint, so Tollgate estimates: the bundled cl100k tokenizer over the
  request translated to OpenAI's chat shape, with the tool definitions' JSON and the assistant turns'
  tool calls counted as text. Other tokenizers differ, so this is an estimate, not the upstream's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tollgate.accounts.keys import Authenticator, key_from_headers
from tollgate.protocol.chat import parse_chat_request
from tollgate.providers.anthropic.client import AnthropicProvider
from tollgate.providers.anthropic.ingress import openai_request_from_messages
from tollgate.routing.catalog import Target
from tollgate.routing.router import Router
from tollgate.services.completions import parse_json
from tollgate.services.context import RequestContext
from tollgate.tokens import count_messages, count_text

__all__ = ["FORWARDED_FIELDS", "TokenCount", "TokenCounter", "estimate_input_tokens"]

# The body fields of Anthropic's count_tokens request; anything else (max_tokens, stream, ...) is left
# out, as Anthropic rejects fields it does not know.
FORWARDED_FIELDS = frozenset(
    (
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "output_format",
        "cache_control",
        "speed",
        "mcp_servers",
        "context_management",
    )
)


@dataclass(frozen=True, slots=True)
class TokenCount:
    """``input_tokens`` for a request, and who counted them: ``estimated`` is Tollgate's cl100k count."""

    input_tokens: int
    target: Target
    estimated: bool

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return {
            "X-Request-ID": ctx.request_id,
            "X-Tollgate-Provider": self.target.provider.name,
            "X-Tollgate-Model": self.target.model.id,
            "X-Tollgate-Upstream-Model": self.target.deployment.model,
            "X-Tollgate-Token-Count": "estimate" if self.estimated else "upstream",
        }


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Tollgate's count of an OpenAI chat request's input: the messages (``count_messages``) plus the
    text of assistant tool calls and of the tool definitions, which ``count_messages`` leaves out."""
    total = count_messages(body["messages"])
    for message in body["messages"]:
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            total += count_text(str(fn.get("name") or "")) + count_text(str(fn.get("arguments") or ""))
    for tool in body.get("tools") or ():
        total += count_text(orjson.dumps(tool.get("function") or tool).decode())
    return total


class TokenCounter:
    """Counts the input tokens of Anthropic Messages requests with the chat pipeline's router and keys."""

    def __init__(self, router: Router, auth: Authenticator, upstream_timeout: float) -> None:
        self.router = router
        self.auth = auth
        self.upstream_timeout = upstream_timeout

    async def count(self, ctx: RequestContext, raw: bytes) -> TokenCount:
        """Raises ``AuthenticationError`` (401), ``ValidationError`` (400, unknown model included) or the
        Anthropic upstream's mapped ``UpstreamError``."""
        ctx.principal = await self.auth.authenticate(key_from_headers(ctx.authorization, ctx.x_api_key))
        body = parse_json(raw)
        req = parse_chat_request(openai_request_from_messages(body, counting=True))
        await self.router.resolve_auto(req)  # model "auto": count for the model it picks
        target = self.router.plan(req)[0]
        if isinstance(target.provider, AnthropicProvider):
            sent = {k: v for k, v in body.items() if k in FORWARDED_FIELDS}
            tokens = await target.provider.count_tokens(sent, target.deployment.model, self.upstream_timeout)
            return TokenCount(tokens, target, estimated=False)
        return TokenCount(estimate_input_tokens(req.body), target, estimated=True)
