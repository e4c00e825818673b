"""Routing preferences read from a chat body (pure).

Two spellings are accepted: seed 002's flat fields (``provider_order``, ``provider_max_prompt_price``, ...)
and OpenRouter's nested ``provider`` object (``{"order": [...], "max_price": {"prompt": 1}}``). Setting the
same preference both ways is an error. ``models`` is the ordered list of fallback public models.

``take_preferences`` *removes* every routing field from the body, so nothing of it reaches an upstream.
Prices are USD (account currency) per million tokens for prompt and completion, per image and per request,
as on OpenRouter. Each validation error is a 400 that names the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from tollgate.errors import ValidationError

Sort = Literal["price", "latency", "throughput"]
SORTS: Final = ("price", "latency", "throughput")
PRICE_KINDS: Final = ("prompt", "completion", "request", "image")

# preference attribute -> (flat body field, nested ``provider`` key)
_FIELDS: Final = {
    "order": ("provider_order", "order"),
    "only": ("provider_only", "only"),
    "ignore": ("provider_ignore", "ignore"),
    "sort": ("provider_sort", "sort"),
    "quantizations": ("provider_quantizations", "quantizations"),
    "zdr": ("provider_zdr", "zdr"),
    "data_collection": ("provider_data_collection", "data_collection"),
    "require_parameters": ("provider_require_parameters", "require_parameters"),
    "allow_fallbacks": ("provider_allow_fallbacks", "allow_fallbacks"),
    "enforce_distillable_text": ("provider_enforce_distillable_text", "enforce_distillable_text"),
}
_FLAT_PRICES: Final = {kind: f"provider_max_{kind}_price" for kind in PRICE_KINDS}
# Refused when set (an empty value is accepted and removed): Tollgate keeps per-provider request settings in
# the deployments' configuration, not in requests.
_IGNORED: Final = ("provider_configs",)
ROUTING_FIELDS: Final = frozenset(
    ["models", "provider", *(flat for flat, _ in _FIELDS.values()), *_FLAT_PRICES.values(), *_IGNORED]
)


@dataclass(slots=True)
class Preferences:
    models: list[str] = field(default_factory=list)
    order: list[str] | None = None
    only: list[str] | None = None
    ignore: list[str] | None = None
    sort: Sort | None = None
    max_price: dict[str, Decimal] = field(default_factory=dict)  # kind -> price per million / per unit
    quantizations: list[str] | None = None
    zdr: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    require_parameters: bool = False
    allow_fallbacks: bool = True
    enforce_distillable_text: bool = False  # only deployments marked distillable_text
    names: dict[str, str] = field(default_factory=dict)  # preference -> the field name the client used

    def name(self, pref: str) -> str:
        """The body field the client used for ``pref`` (for error messages)."""
        return self.names.get(pref, _FIELDS.get(pref, (pref, pref))[0])


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError(f"'{name}' must be an array of non-empty strings; got {value!r}.", param=name)
    return list(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"'{name}' must be true or false; got {value!r}.", param=name)
    return value


def _price(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValidationError(f"'{name}' must be a non-negative number; got {value!r}.", param=name)
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError(f"'{name}' must be a non-negative number; got {value!r}.", param=name) from None
    if not price.is_finite() or price < 0:
        raise ValidationError(f"'{name}' must be a non-negative number; got {value!r}.", param=name)
    return price


def _set(prefs: Preferences, attr: str, value: Any, name: str) -> None:
    if value is None:
        return
    if attr in prefs.names:
        raise ValidationError(
            f"'{name}' and '{prefs.names[attr]}' set the same preference; use one of them.", param=name
        )
    prefs.names[attr] = name
    match attr:
        case "order" | "only" | "ignore" | "quantizations":
            setattr(prefs, attr, [s.lower() for s in _strings(value, name)])
        case "sort":
            if value not in SORTS:
                raise ValidationError(
                    f"'{name}' must be one of {', '.join(SORTS)}; got {value!r}.", param=name
                )
            prefs.sort = value
        case "zdr":
            prefs.zdr = _bool(value, name)
        case "require_parameters":
            prefs.require_parameters = _bool(value, name)
        case "allow_fallbacks":
            prefs.allow_fallbacks = _bool(value, name)
        case "enforce_distillable_text":
            prefs.enforce_distillable_text = _bool(value, name)
        case "data_collection":
            if value not in ("allow", "deny"):
                raise ValidationError(f"'{name}' must be 'allow' or 'deny'; got {value!r}.", param=name)
            prefs.data_collection = value
        case _:  # max_price.<kind>
            prefs.max_price[attr.removeprefix("max_price.")] = _price(value, name)


def _nested(prefs: Preferences, provider: Any) -> None:
    if provider is None:
        return
    if not isinstance(provider, dict):
        raise ValidationError("'provider' must be an object of routing preferences.", param="provider")
    known = {nested: attr for attr, (_, nested) in _FIELDS.items()}
    for key, value in provider.items():
        name = f"provider.{key}"
        if key == "max_price":
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ValidationError(f"'{name}' must be an object such as {{\"prompt\": 1}}.", param=name)
            for kind, price in value.items():
                if kind not in PRICE_KINDS:
                    raise ValidationError(
                        f"'{name}.{kind}' is not a price limit; use one of {', '.join(PRICE_KINDS)}.",
                        param=f"{name}.{kind}",
                    )
                _set(prefs, f"max_price.{kind}", price, f"{name}.{kind}")
        elif key in known:
            _set(prefs, known[key], value, name)
        else:
            raise ValidationError(
                f"'{name}' is not a routing preference; use one of {', '.join([*known, 'max_price'])}.",
                param=name,
            )


def take_preferences(body: dict[str, Any]) -> Preferences:
    """Parse and remove the routing fields of ``body``."""
    prefs = Preferences()
    if not ROUTING_FIELDS.intersection(body):
        return prefs
    models = body.pop("models", None)
    if models is not None:
        prefs.models = _strings(models, "models")
    for attr, (flat, _) in _FIELDS.items():
        _set(prefs, attr, body.pop(flat, None), flat)
    for kind, flat in _FLAT_PRICES.items():
        _set(prefs, f"max_price.{kind}", body.pop(flat, None), flat)
    _nested(prefs, body.pop("provider", None))
    for name in _IGNORED:
        if body.pop(name, None):
            raise ValidationError(
                f"'{name}' is not supported: per-provider request settings are part of each deployment's "
                "configuration on this gateway; remove the field.",
                param=name,
            )
    return prefs
