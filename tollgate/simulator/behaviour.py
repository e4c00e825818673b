"""Simulator behaviour options: parsing, validation and merging (pure, no I/O).

Options are merged, later wins: server defaults, then the ``@key=value,...`` suffix of
the model name, then the ``"sim"`` object of the request body.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "Behaviour",
    "OptionError",
    "Resolver",
    "build_behaviour",
    "parse_model",
    "parse_suffix",
    "parse_value",
]


class OptionError(ValueError):
    """An unknown simulator option or an invalid option value."""


@dataclass(frozen=True, slots=True)
class Behaviour:
    """The resolved options for one request."""

    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    completion_tokens: int | None = None  # None: 20, or the word count of ``reply``
    prompt_tokens: int | None = None  # None: computed from the messages
    cached_tokens: int = 0
    reply: str | None = None
    error: int | None = None
    retry_after: float | None = None
    fail_first: int = 0
    scenario: str = "default"
    invalid_json: bool = False
    cut_after: int | None = None
    hang: bool = False
    hang_after: int | None = None
    ignore_include_usage: bool = False
    no_usage: bool = False
    require_key: str | None = None


_INT: Final = ("completion_tokens", "prompt_tokens", "cached_tokens", "fail_first", "cut_after", "hang_after")
_FLOAT: Final = ("latency_ms", "chunk_delay_ms", "retry_after")
_BOOL: Final = ("invalid_json", "hang", "ignore_include_usage", "no_usage")
_STR: Final = ("reply", "scenario", "require_key")
_OPTIONAL: Final = frozenset(
    (
        "completion_tokens",
        "prompt_tokens",
        "reply",
        "error",
        "retry_after",
        "cut_after",
        "hang_after",
        "require_key",
    )
)
OPTION_NAMES: Final = frozenset(f.name for f in dataclasses.fields(Behaviour))
_TRUE: Final = frozenset(("true", "yes", "on", "1"))
_FALSE: Final = frozenset(("false", "no", "off", "0"))


def parse_value(text: str) -> Any:
    """Parse a textual option value as bool, int, float, or else keep the string."""
    low = text.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_suffix(suffix: str) -> dict[str, Any]:
    """Parse ``"error=500,latency_ms=50,hang"`` (a bare key means ``True``)."""
    out: dict[str, Any] = {}
    for item in suffix.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        out[key.strip()] = parse_value(value) if sep else True
    return out


def parse_model(model: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name@k=v,..."`` into the bare model name and its options."""
    name, sep, suffix = model.partition("@")
    return name, (parse_suffix(suffix) if sep else {})


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise OptionError(f"simulator option {key!r} must be an integer")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        result = int(value)
    else:
        raise OptionError(f"simulator option {key!r} must be an integer")
    if result < 0:
        raise OptionError(f"simulator option {key!r} must be >= 0")
    return result


def _to_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise OptionError(f"simulator option {key!r} must be a number")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"simulator option {key!r} must be a number") from None
    if not (result >= 0 and math.isfinite(result)):
        raise OptionError(f"simulator option {key!r} must be a finite number >= 0")
    return result


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise OptionError(f"simulator option {key!r} must be a boolean")


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        if key in _OPTIONAL:
            return None
        raise OptionError(f"simulator option {key!r} cannot be null")
    if key in _INT:
        return _to_int(key, value)
    if key in _FLOAT:
        return _to_float(key, value)
    if key in _BOOL:
        return _to_bool(key, value)
    if key in _STR:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise OptionError(f"simulator option {key!r} must be a string")
    # error: an HTTP status code
    status = _to_int(key, value)
    if not 400 <= status <= 599:
        raise OptionError("simulator option 'error' must be an HTTP status between 400 and 599")
    return status


def build_behaviour(*layers: Mapping[str, Any]) -> Behaviour:
    """Merge option mappings (later wins) and validate them into a ``Behaviour``."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in OPTION_NAMES:
                raise OptionError(f"unknown simulator option {key!r}")
            merged[key] = _coerce(key, value)
    return Behaviour(**merged)


class Resolver:
    """Resolve per-request behaviour against server defaults, caching model-suffix parses."""

    __slots__ = ("_cache", "defaults", "default_options")

    _CACHE_SIZE: Final = 1024

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        self.default_options: dict[str, Any] = dict(defaults or {})
        self.defaults = build_behaviour(self.default_options)
        self._cache: dict[str, tuple[str, dict[str, Any], Behaviour]] = {}

    def _model(self, model: str) -> tuple[str, dict[str, Any], Behaviour]:
        hit = self._cache.get(model)
        if hit is None:
            name, opts = parse_model(model)
            behaviour = build_behaviour(self.default_options, opts) if opts else self.defaults
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            hit = self._cache[model] = (name, opts, behaviour)
        return hit

    def resolve(self, model: Any, sim: Any = None) -> tuple[str | None, Behaviour]:
        """Return ``(model name without suffix, behaviour)``; ``model`` may be missing (None)."""
        if isinstance(model, str):
            name, opts, behaviour = self._model(model)
        else:
            name, opts, behaviour = None, {}, self.defaults
        if sim is None:
            return name, behaviour
        if not isinstance(sim, Mapping):
            raise OptionError("'sim' must be an object")
        return name, build_behaviour(self.default_options, opts, sim)
