"""tollgate/accounts/pricing.py: exact request costs, rounded once to 1e-10."""

from __future__ import annotations

from decimal import Decimal

from tollgate.accounts.pricing import cost_of, max_cost
from tollgate.providers.usage import Usage
from tollgate.settings import Pricing

D = Decimal


def test_cost_is_prompt_plus_completion() -> None:
    pricing = Pricing(prompt=D("0.000001"), completion=D("0.000002"))
    assert cost_of(Usage(prompt_tokens=1000, completion_tokens=500), pricing) == D("0.002")


def test_cached_tokens_are_priced_at_the_cache_read_price() -> None:
    pricing = Pricing(prompt=D("0.000001"), completion=D("0.000002"), input_cache_read=D("0.0000001"))
    usage = Usage(prompt_tokens=1000, completion_tokens=10, cached_tokens=800)
    # 200 uncached prompt + 800 cached + 10 completion
    assert cost_of(usage, pricing) == D("0.0002") + D("0.00008") + D("0.00002")


def test_cached_tokens_without_a_cache_price_cost_the_prompt_price() -> None:
    pricing = Pricing(prompt=D("0.000001"))
    assert cost_of(Usage(prompt_tokens=1000, cached_tokens=800), pricing) == D("0.001")


def test_cached_tokens_beyond_the_prompt_are_capped() -> None:
    pricing = Pricing(prompt=D("0.000001"), input_cache_read=D("0"))
    assert cost_of(Usage(prompt_tokens=100, cached_tokens=500), pricing) == D(0)
    assert cost_of(Usage(prompt_tokens=100, completion_tokens=1, cached_tokens=500), pricing) == D(0)


def test_request_price_is_added_once_even_without_tokens() -> None:
    pricing = Pricing(prompt=D("0.000001"), request=D("0.005"))
    assert cost_of(Usage(), pricing) == D("0.005")
    assert cost_of(Usage(prompt_tokens=1000), pricing) == D("0.006")


def test_free_model_costs_nothing() -> None:
    assert cost_of(Usage(prompt_tokens=10**6, completion_tokens=10**6), Pricing()) == D(0)


def test_cost_is_rounded_to_1e_10() -> None:
    pricing = Pricing(prompt=D("0.00000000003"))  # 3e-11 per token
    assert cost_of(Usage(prompt_tokens=1), pricing) == D(0)
    assert cost_of(Usage(prompt_tokens=2), pricing) == D("0.0000000001")  # 6e-11 rounds up
    assert cost_of(Usage(prompt_tokens=5), pricing) == D("0.0000000002")  # 1.5e-10: half to even
    assert cost_of(Usage(prompt_tokens=7), pricing).as_tuple().exponent == -10


def test_rounding_happens_once_on_the_total() -> None:
    # Each part alone (4e-11) would round to zero; the sum 1.2e-10 rounds to 1e-10.
    tiny = D("0.00000000004")
    pricing = Pricing(prompt=tiny, completion=tiny, input_cache_read=tiny, request=tiny)
    usage = Usage(prompt_tokens=1, completion_tokens=1)
    assert cost_of(usage, pricing) == D("0.0000000001")
    pricing_parts = Pricing(prompt=tiny, completion=tiny, input_cache_read=tiny, request=D(0))
    usage_parts = Usage(prompt_tokens=2, completion_tokens=1, cached_tokens=1)
    assert cost_of(usage_parts, pricing_parts) == D("0.0000000001")


def test_cost_is_exact_for_large_counts() -> None:
    pricing = Pricing(prompt=D("0.0000001"), completion=D("0.0000004"), input_cache_read=D("0.00000005"))
    usage = Usage(prompt_tokens=123_456_789, completion_tokens=987_654_321, cached_tokens=23_456_789)
    expected = (
        D(100_000_000) * D("0.0000001") + D(23_456_789) * D("0.00000005") + D(987_654_321) * D("0.0000004")
    )
    assert cost_of(usage, pricing) == expected
    assert isinstance(cost_of(usage, pricing), Decimal)


def test_max_cost_prices_every_prompt_token_and_the_full_output() -> None:
    pricing = Pricing(
        prompt=D("0.000001"), completion=D("0.000002"), input_cache_read=D("0"), request=D("0.01")
    )
    assert max_cost(1000, 4096, pricing) == D("0.001") + D("0.008192") + D("0.01")


def test_max_cost_is_rounded_to_1e_10_once() -> None:
    tiny = D("0.00000000004")
    assert max_cost(1, 1, Pricing(prompt=tiny, completion=tiny, request=tiny)) == D("0.0000000001")
    assert max_cost(0, 0, Pricing()) == D(0)


def test_max_cost_is_never_below_the_actual_cost() -> None:
    pricing = Pricing(prompt=D("0.000003"), completion=D("0.000015"), input_cache_read=D("0.0000003"))
    for prompt, completion, cached in [(10, 0, 0), (500, 200, 400), (8000, 4096, 8000)]:
        actual = cost_of(
            Usage(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached), pricing
        )
        assert actual <= max_cost(prompt, 4096, pricing)
