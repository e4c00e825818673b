"""Catalogues of stub providers for the pure routing tests."""

from __future__ import annotations

from typing import Any, cast

from tollgate.protocol.chat import ChatRequest
from tollgate.providers.base import Provider
from tollgate.routing.catalog import Catalog
from tollgate.settings import ModelConfig


class StubProvider:
    def __init__(self, name: str) -> None:
        self.name = name


def catalog(*models: dict[str, Any]) -> Catalog:
    configs = [ModelConfig.model_validate(m) for m in models]
    names = {d.provider for m in configs for d in m.deployments}
    return Catalog(configs, {n: cast(Provider, StubProvider(n)) for n in names})


def model(model_id: str, *deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "deployments": list(deployments), **extra}


def dep(provider: str, upstream: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"provider": provider, "model": upstream or f"{provider}-model", **extra}


def request(model_id: str, **fields: Any) -> ChatRequest:
    body = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatRequest(body, model_id, False, None)
