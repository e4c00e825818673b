"""The automatic router at request time: embed the prompt, select among catalogue models.

Used by ``model: "auto"`` chat requests (``Router.resolve_auto``) and by ``POST /v1/select-model``.
Candidates are the request's ``models`` (each must be in the catalogue; one the profile does not score is
ranked with a neutral quality prior, see ``select``), else every catalogue model the profile scores, else,
when it scores none of them, every text-generating catalogue model. A model's price is its cheapest
deployment's prompt + completion price.
"""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from tollgate.errors import UpstreamUnavailableError, ValidationError
from tollgate.routing.auto.embedding import AsyncEmbed, async_embedder
from tollgate.routing.auto.profile import Profile
from tollgate.routing.auto.select import Selection, select
from tollgate.routing.catalog import Catalog

AUTO = "auto"
DEFAULT_PROFILE = "default_profile.json"


def prompt_text(messages: list[Any]) -> str:
    """The text routed on: the last user message (text parts joined)."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
    return ""


def cost_bias_of(value: Any, default: float, name: str = "cost_bias") -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValidationError(f"'{name}' must be a number between 0 and 1; got {value!r}.", param=name)
    return float(value)


class AutoRouter:
    def __init__(self, profile: Profile, catalog: Catalog, embed: AsyncEmbed, cost_bias: float = 0.5) -> None:
        self.profile = profile
        self.catalog = catalog
        self.embed = embed
        self.cost_bias = cost_bias

    def price(self, model_id: str) -> Decimal:
        return min(t.pricing.prompt + t.pricing.completion for t in self.catalog.targets(model_id))

    def candidates(self, models: Any, param: str = "models") -> dict[str, Decimal]:
        if models is None or models == []:
            known = [m for m in self.catalog.models if m in self.profile.scores]
            if not known:
                known = [m.id for m in self.catalog.models.values() if "text" in m.output_modalities]
            if not known:
                raise ValidationError("This gateway has no text model to route to.", param=param)
            return {m: self.price(m) for m in known}
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ValidationError(f"'{param}' must be an array of model ids.", param=param)
        out: dict[str, Decimal] = {}
        for i, m in enumerate(models):
            if m == AUTO:
                continue
            if m not in self.catalog.models:
                raise ValidationError(
                    f"'{param}[{i}]': model '{m}' is not available.",
                    param=f"{param}[{i}]",
                    code="MODEL_NOT_ALLOWED",
                )
            out[m] = self.price(m)
        if not out:
            raise ValidationError(f"'{param}' names no candidate model.", param=param)
        return out

    async def choose(self, prompt: str, models: Any, cost_bias: float | None) -> Selection:
        prices = self.candidates(models)
        bias = self.cost_bias if cost_bias is None else cost_bias
        try:
            vector = (await self.embed([prompt]))[0]
        except (ImportError, RuntimeError, OSError) as exc:
            raise UpstreamUnavailableError(f"The automatic router cannot embed the prompt: {exc}") from None
        return select(self.profile, vector, prices, bias)


def selection_headers(selection: Selection) -> dict[str, str]:
    return {"X-Tollgate-Auto-Model": selection.model, "X-Tollgate-Auto-Reason": selection.reason}


def load_auto_router(setting: str | None, catalog: Catalog, cost_bias: float) -> AutoRouter | None:
    """The automatic router of a ``routing.auto_profile`` setting ("default", a path, or None: off)."""
    if setting is None:
        return None
    if setting == "default":
        profile = Profile.from_json(resources.files(__package__).joinpath(DEFAULT_PROFILE).read_bytes())
    else:
        profile = Profile.load(Path(setting))
    return AutoRouter(profile, catalog, async_embedder(profile.embedding_model), cost_bias)
