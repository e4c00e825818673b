from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tollgate.errors import ValidationError
from tollgate.routing.preferences import take_preferences


def test_flat_fields_are_parsed_and_removed_from_the_body() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "temperature": 0.5,
        "models": ["a", "b"],
        "provider_order": ["Alpha", "beta"],
        "provider_only": ["alpha"],
        "provider_ignore": ["gamma"],
        "provider_sort": "price",
        "provider_max_prompt_price": 1,
        "provider_max_completion_price": "2.5",
        "provider_max_request_price": 0.01,
        "provider_max_image_price": 0,
        "provider_quantizations": ["fp8"],
        "provider_zdr": True,
        "provider_data_collection": "deny",
        "provider_require_parameters": True,
        "provider_allow_fallbacks": False,
        "provider_configs": {},
        "provider_enforce_distillable_text": True,
    }
    prefs = take_preferences(body)
    assert body == {"model": "m", "temperature": 0.5}
    assert prefs.models == ["a", "b"]
    assert prefs.order == ["alpha", "beta"] and prefs.only == ["alpha"] and prefs.ignore == ["gamma"]
    assert prefs.sort == "price" and prefs.quantizations == ["fp8"]
    assert prefs.max_price == {
        "prompt": Decimal(1),
        "completion": Decimal("2.5"),
        "request": Decimal("0.01"),
        "image": Decimal(0),
    }
    assert prefs.zdr is True and prefs.data_collection == "deny"
    assert prefs.require_parameters is True and prefs.allow_fallbacks is False
    assert prefs.enforce_distillable_text is True


def test_provider_configs_with_content_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        take_preferences({"model": "m", "provider_configs": {"openai": {"temperature": 0}}})
    assert exc.value.param == "provider_configs" and "deployment" in exc.value.message


def test_openrouter_provider_object_is_parsed_and_removed() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "provider": {
            "order": ["a"],
            "only": ["a", "b"],
            "ignore": ["c"],
            "sort": "latency",
            "max_price": {"prompt": 1, "completion": 2, "request": "0.5", "image": 3},
            "quantizations": ["int8"],
            "zdr": True,
            "data_collection": "deny",
            "require_parameters": True,
            "allow_fallbacks": False,
        },
    }
    prefs = take_preferences(body)
    assert body == {"model": "m"}
    assert prefs.order == ["a"] and prefs.sort == "latency" and prefs.max_price["request"] == Decimal("0.5")
    assert prefs.names["zdr"] == "provider.zdr"
    assert prefs.name("max_price.prompt") == "provider.max_price.prompt"


def test_a_body_without_routing_fields_is_untouched() -> None:
    body: dict[str, Any] = {"model": "m", "messages": []}
    prefs = take_preferences(body)
    assert body == {"model": "m", "messages": []}
    assert prefs.models == [] and prefs.allow_fallbacks and prefs.sort is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"models": "a"}, "models"),
        ({"provider_order": [1]}, "provider_order"),
        ({"provider_sort": "fastest"}, "provider_sort"),
        ({"provider_max_prompt_price": -1}, "provider_max_prompt_price"),
        ({"provider_max_completion_price": "cheap"}, "provider_max_completion_price"),
        ({"provider_max_request_price": True}, "provider_max_request_price"),
        ({"provider_zdr": "yes"}, "provider_zdr"),
        ({"provider_data_collection": "maybe"}, "provider_data_collection"),
        ({"provider_allow_fallbacks": 1}, "provider_allow_fallbacks"),
        ({"provider": []}, "provider"),
        ({"provider": {"sort": "x"}}, "provider.sort"),
        ({"provider": {"max_price": {"audio": 1}}}, "provider.max_price.audio"),
        ({"provider": {"max_price": 3}}, "provider.max_price"),
        ({"provider": {"favourite": "a"}}, "provider.favourite"),
        ({"provider_zdr": True, "provider": {"zdr": False}}, "provider.zdr"),
    ],
)
def test_invalid_preferences_are_400s_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as exc:
        take_preferences({"model": "m", **fields})
    assert exc.value.param == param
    assert param in exc.value.message
