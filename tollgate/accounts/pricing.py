"""Cost of a request from its usage and the model's prices; ``Decimal`` throughout, rounded once."""

from __future__ import annotations

from decimal import Decimal

from tollgate.providers.usage import Usage
from tollgate.settings import Pricing
from tollgate.storage.money import round_money


def cost_of(usage: Usage, pricing: Pricing) -> Decimal:
    """Prompt tokens include cache reads, which are priced at the cache-read price."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    total = (
        (usage.prompt_tokens - cached) * pricing.prompt
        + cached * pricing.cache_read
        + usage.completion_tokens * pricing.completion
        + pricing.request
    )
    return round_money(total)


def max_cost(prompt_tokens: int, max_output_tokens: int, pricing: Pricing) -> Decimal:
    """The most a request can plausibly cost: what the balance reservation holds."""
    return round_money(
        prompt_tokens * pricing.prompt + max_output_tokens * pricing.completion + pricing.request
    )
