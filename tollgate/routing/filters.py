"""Which deployments satisfy a request's preferences (pure).

Each filter is a predicate named by the preference field the client used; ``apply_filters`` keeps what
passes every filter and remembers, per filter, which deployments it excluded, so that a request nothing can
serve gets a 400 saying exactly why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Final

from tollgate.errors import ValidationError
from tollgate.routing.catalog import Target
from tollgate.routing.preferences import Preferences

MILLION: Final = Decimal(1_000_000)

# Request fields that are "parameters" in OpenRouter's ``supported_parameters`` sense.
PARAMETERS: Final = frozenset(
    (
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "top_a",
        "stop",
        "frequency_penalty",
        "presence_penalty",
        "repetition_penalty",
        "seed",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "structured_outputs",
        "reasoning",
        "reasoning_effort",
        "include_reasoning",
        "web_search_options",
        "verbosity",
    )
)
_ALIASES: Final = {"max_completion_tokens": "max_tokens"}


def sent_parameters(body: dict[str, Any]) -> set[str]:
    """The parameters a request uses (``null`` counts as not sent)."""
    found = {_ALIASES.get(k, k) for k, v in body.items() if v is not None}
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        found.add("structured_outputs")
    return found & PARAMETERS


def label(t: Target) -> str:
    return f"{t.model.id}@{t.provider.name}/{t.deployment.model}"


def quantization(t: Target) -> str:
    return (t.deployment.quantization or t.model.quantization).lower()


Predicate = Callable[[Target], bool]


def _filters(prefs: Preferences, body: dict[str, Any]) -> list[tuple[str, str, Predicate]]:
    """(field name, what it requires, predicate) for each preference that is set."""
    out: list[tuple[str, str, Predicate]] = []
    if prefs.only is not None:
        only = set(prefs.only)
        out.append(
            (prefs.name("only"), f"provider in {prefs.only}", lambda t: t.provider.name.lower() in only)
        )
    if prefs.ignore is not None:
        ignore = set(prefs.ignore)
        out.append(
            (
                prefs.name("ignore"),
                f"provider not in {prefs.ignore}",
                lambda t: t.provider.name.lower() not in ignore,
            )
        )
    if prefs.allow_fallbacks is False and prefs.order:
        order = set(prefs.order)
        out.append(
            (
                prefs.name("allow_fallbacks"),
                f"provider in the order {prefs.order} (fallbacks disallowed)",
                lambda t: t.provider.name.lower() in order,
            )
        )
    if prefs.quantizations is not None:
        quants = set(prefs.quantizations)
        out.append(
            (
                prefs.name("quantizations"),
                f"quantization in {prefs.quantizations}",
                lambda t: quantization(t) in quants,
            )
        )
    if prefs.zdr:
        out.append((prefs.name("zdr"), "zero data retention", lambda t: t.deployment.zdr))
    if prefs.enforce_distillable_text:
        out.append(
            (
                prefs.name("enforce_distillable_text"),
                "a model whose terms permit distillation (deployment distillable_text)",
                lambda t: t.deployment.distillable_text,
            )
        )
    if prefs.data_collection == "deny":
        out.append(
            (
                prefs.name("data_collection"),
                "no data collection",
                lambda t: t.deployment.data_collection == "deny",
            )
        )
    for kind, limit in prefs.max_price.items():
        out.append((prefs.name(f"max_price.{kind}"), f"{kind} price <= {limit}", _price_check(kind, limit)))
    if prefs.require_parameters:
        wanted = sent_parameters(body)
        out.append(
            (
                prefs.name("require_parameters"),
                f"support for {sorted(wanted)}",
                lambda t: (
                    t.deployment.supported_parameters is None
                    or wanted <= set(t.deployment.supported_parameters)
                ),
            )
        )
    return out


def _price_check(kind: str, limit: Decimal) -> Predicate:
    scale = MILLION if kind in ("prompt", "completion") else Decimal(1)

    def ok(t: Target) -> bool:
        price: Decimal = getattr(t.pricing, kind)
        return price * scale <= limit

    return ok


def apply_filters(
    candidates: Iterable[Target], prefs: Preferences, body: dict[str, Any]
) -> tuple[list[Target], list[tuple[str, str, list[Target]]]]:
    """The candidates that pass every filter, and per filter (name, requirement, excluded deployments)."""
    kept = list(candidates)
    excluded: list[tuple[str, str, list[Target]]] = []
    for name, requirement, predicate in _filters(prefs, body):
        passing = [t for t in kept if predicate(t)]
        dropped = [t for t in kept if not predicate(t)]
        if dropped:
            excluded.append((name, requirement, dropped))
        kept = passing
    return kept, excluded


def nothing_left(models: list[str], excluded: list[tuple[str, str, list[Target]]]) -> ValidationError:
    reasons = "; ".join(
        f"'{name}' ({requirement}) excluded {', '.join(label(t) for t in dropped)}"
        for name, requirement, dropped in excluded
    )
    return ValidationError(
        f"No deployment of {', '.join(repr(m) for m in models)} satisfies the routing preferences: {reasons}.",
        param=excluded[0][0] if excluded else None,
        code="NO_ELIGIBLE_DEPLOYMENT",
        details={"excluded": {name: [label(t) for t in dropped] for name, _, dropped in excluded}},
    )
