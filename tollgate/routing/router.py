"""Routing: which deployments may serve a request, in what order. Pure decisions, no I/O.

``plan`` removes the routing preferences from the body (they never go upstream), expands ``models`` into
the requested model followed by its fallback models, filters each model's deployments by the preferences,
orders them (``strategies``), and leaves out deployments whose circuit breaker is open, unless every
candidate is open, in which case they are all tried anyway.

``resolve_auto`` runs first for ``model: "auto"``: the automatic router (``routing.auto``) picks the model
for the prompt and its ranked alternatives become the ``models`` fallback list.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tollgate.errors import ValidationError
from tollgate.protocol.chat import ChatRequest
from tollgate.routing.auto.chooser import AUTO, AutoRouter, cost_bias_of, prompt_text
from tollgate.routing.auto.select import Selection
from tollgate.routing.catalog import Catalog, Target
from tollgate.routing.filters import apply_filters, nothing_left
from tollgate.routing.health import HealthBoard
from tollgate.routing.preferences import take_preferences
from tollgate.routing.strategies import ordered
from tollgate.settings import RoutingConfig


class Router:
    def __init__(
        self,
        catalog: Catalog,
        config: RoutingConfig | None = None,
        health: HealthBoard | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.catalog = catalog
        self.config = config or RoutingConfig()
        self.health = health or HealthBoard(self.config)
        self.rng = rng
        self.auto: AutoRouter | None = None

    async def resolve_auto(self, req: ChatRequest) -> Selection | None:
        """For ``model: "auto"``: choose the model (rewriting the request); None for any other model."""
        if req.model != AUTO:
            return None
        if self.auto is None:
            raise ValidationError(
                "Model 'auto' is not enabled on this gateway (set routing.auto_profile).", param="model"
            )
        bias = cost_bias_of(req.body.pop("cost_bias", None), self.auto.cost_bias)
        selection = await self.auto.choose(prompt_text(req.body["messages"]), req.body.get("models"), bias)
        req.model = req.body["model"] = selection.model
        req.body["models"] = [c.model for c in selection.ranked[1:]]
        return selection

    def _models(self, req: ChatRequest, fallbacks: list[str]) -> list[str]:
        self.catalog.targets(req.model)  # an unknown primary model is the client's error
        names = [req.model]
        for i, name in enumerate(fallbacks):
            if name not in self.catalog.models:
                raise ValidationError(
                    f"'models[{i}]': model '{name}' is not available. "
                    f"Available models: {', '.join(self.catalog.models)}.",
                    param=f"models[{i}]",
                    code="MODEL_NOT_ALLOWED",
                )
            if name not in names:
                names.append(name)
        return names

    def plan(self, req: ChatRequest) -> list[Target]:
        """Candidates in the order they are tried; raises a client error when none can serve."""
        prefs = take_preferences(req.body)
        models = self._models(req, prefs.models)
        plan: list[Target] = []
        excluded_all = []
        for model_id in models:
            kept, excluded = apply_filters(self.catalog.targets(model_id), prefs, req.body)
            excluded_all.extend(excluded)
            chosen = ordered(kept, prefs, self.health, self.rng)
            if not prefs.allow_fallbacks and not prefs.order:
                chosen = chosen[:1]
            plan.extend(chosen)
        if not plan:
            raise nothing_left(models, excluded_all)
        healthy = [t for t in plan if self.health.available(t.key)]
        return healthy or plan
