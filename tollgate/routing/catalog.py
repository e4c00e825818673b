"""The model catalogue: public models, their deployments and the provider that serves each."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tollgate.errors import NotFoundError, ValidationError
from tollgate.providers.base import Provider
from tollgate.settings import Deployment, ModelConfig, Pricing


@dataclass(frozen=True, slots=True)
class Target:
    """One way to serve a public model: a deployment on a provider, at a price."""

    model: ModelConfig
    deployment: Deployment
    provider: Provider

    @property
    def pricing(self) -> Pricing:
        """Effective price: the deployment's own, else the model's."""
        return self.deployment.pricing or self.model.pricing

    @property
    def key(self) -> str:
        """Identifies the deployment in the health board."""
        return f"{self.model.id}@{self.provider.name}/{self.deployment.model}"


class Catalog:
    def __init__(self, models: list[ModelConfig], providers: dict[str, Provider]) -> None:
        self.models = {m.id: m for m in models}
        self.loaded_at = int(time.time())  # the ``created`` of models whose configuration names none
        self._targets = {m.id: [Target(m, d, providers[d.provider]) for d in m.deployments] for m in models}

    def model(self, model_id: str) -> ModelConfig:
        found = self.models.get(model_id)
        if found is None:
            raise NotFoundError(
                f"Model '{model_id}' is not available. Available models: {', '.join(self.models)}."
            )
        return found

    def targets(self, model_id: str) -> list[Target]:
        """Candidates in preference order (declaration order; routing policies refine this)."""
        targets = self._targets.get(model_id)
        if targets is None:
            raise ValidationError(
                f"Model '{model_id}' is not available. Available models: {', '.join(self.models)}.",
                param="model",
                code="MODEL_NOT_ALLOWED",
            )
        return targets
