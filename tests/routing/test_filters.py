from __future__ import annotations

from typing import Any

from tests.routing.builders import catalog, dep, model
from tollgate.routing.filters import apply_filters, label, nothing_left, sent_parameters
from tollgate.routing.preferences import take_preferences

CHEAP = {"prompt": "0.0000001", "completion": "0.0000002"}  # 0.1 / 0.2 per million
DEAR = {"prompt": "0.00001", "completion": "0.00003", "request": "0.01", "image": "0.5"}

CAT = catalog(
    model(
        "m",
        dep("alpha", quantization="fp8", zdr=True, data_collection="deny", pricing=CHEAP),
        dep("beta", supported_parameters=["temperature", "tools"], pricing=DEAR),
        dep("gamma", quantization="int4", data_collection="allow", distillable_text=True),
        quantization="bf16",
        pricing={"prompt": "0.000001", "completion": "0.000002"},
    )
)


def kept(fields: dict[str, Any], **body: Any) -> list[str]:
    full = {"model": "m", **body, **fields}
    prefs = take_preferences(full)
    out, _ = apply_filters(CAT.targets("m"), prefs, full)
    return [t.provider.name for t in out]


def test_provider_lists_filter_case_insensitively() -> None:
    assert kept({"provider_only": ["Alpha", "gamma"]}) == ["alpha", "gamma"]
    assert kept({"provider_ignore": ["BETA"]}) == ["alpha", "gamma"]
    assert kept({"provider": {"only": ["beta"], "ignore": ["beta"]}}) == []


def test_quantization_uses_the_deployment_value_else_the_models() -> None:
    assert kept({"provider_quantizations": ["bf16"]}) == ["beta"]
    assert kept({"provider_quantizations": ["fp8", "int4"]}) == ["alpha", "gamma"]


def test_data_policy_filters() -> None:
    assert kept({"provider_zdr": True}) == ["alpha"]
    assert kept({"provider_zdr": False}) == ["alpha", "beta", "gamma"]
    assert kept({"provider_data_collection": "deny"}) == ["alpha"]
    assert kept({"provider_data_collection": "allow"}) == ["alpha", "beta", "gamma"]


def test_price_limits_are_per_million_tokens_and_use_the_effective_price() -> None:
    assert kept({"provider_max_prompt_price": 1}) == ["alpha", "gamma"]  # 0.1 and 1.0 per million
    assert kept({"provider_max_prompt_price": "0.5"}) == ["alpha"]
    assert kept({"provider": {"max_price": {"completion": 2}}}) == ["alpha", "gamma"]
    assert kept({"provider_max_request_price": "0.001"}) == ["alpha", "gamma"]
    assert kept({"provider_max_image_price": 0}) == ["alpha", "gamma"]


def test_require_parameters_keeps_deployments_supporting_every_parameter_sent() -> None:
    assert kept({"provider_require_parameters": True}, temperature=1) == ["alpha", "beta", "gamma"]
    assert kept({"provider_require_parameters": True}, top_p=1) == ["alpha", "gamma"]
    assert kept({"provider_require_parameters": False}, top_p=1) == ["alpha", "beta", "gamma"]


def test_sent_parameters_ignore_nulls_and_non_parameters() -> None:
    body = {"model": "m", "messages": [], "max_completion_tokens": 5, "seed": None, "tools": []}
    assert sent_parameters(body) == {"max_tokens", "tools"}
    assert "structured_outputs" in sent_parameters({"response_format": {"type": "json_schema"}})


def test_allow_fallbacks_false_keeps_only_ordered_providers() -> None:
    assert kept({"provider": {"order": ["gamma"], "allow_fallbacks": False}}) == ["gamma"]


def test_nothing_left_says_which_filter_excluded_which_deployment() -> None:
    body = {"model": "m", "provider_zdr": True, "provider_ignore": ["alpha"]}
    prefs = take_preferences(body)
    out, excluded = apply_filters(CAT.targets("m"), prefs, body)
    assert out == []
    err = nothing_left(["m"], excluded)
    assert err.status == 400 and err.param == "provider_ignore"
    assert "'provider_ignore'" in err.message and "m@alpha/alpha-model" in err.message
    assert "'provider_zdr'" in err.message and "m@beta/beta-model" in err.message
    assert err.details["excluded"]["provider_zdr"] == ["m@beta/beta-model", "m@gamma/gamma-model"]
    assert label(CAT.targets("m")[0]) == "m@alpha/alpha-model"


def test_enforce_distillable_text_keeps_only_deployments_marked_distillable() -> None:
    assert kept({"provider_enforce_distillable_text": True}) == ["gamma"]
    assert kept({"provider": {"enforce_distillable_text": True}}) == ["gamma"]
    assert kept({"provider_enforce_distillable_text": False}) == ["alpha", "beta", "gamma"]
