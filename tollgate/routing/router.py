"""Routing: which deployments may serve a request, in what order. Pure decisions, no I/O."""

from __future__ import annotations

from tollgate.protocol.chat import ChatRequest
from tollgate.routing.catalog import Catalog, Target


class Router:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def plan(self, req: ChatRequest) -> list[Target]:
        """Candidates in the order they are tried; raises a client error when none can serve."""
        return self.catalog.targets(req.model)
