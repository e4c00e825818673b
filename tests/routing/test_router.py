from __future__ import annotations

import pytest

from tests.routing.builders import catalog, dep, model, request
from tollgate.errors import NotFoundError, ValidationError
from tollgate.routing.health import HealthBoard
from tollgate.routing.router import Router
from tollgate.settings import RoutingConfig

CAT = catalog(
    model("main", dep("a"), dep("b", zdr=True)),
    model("backup", dep("c", zdr=True), dep("d")),
    model("other", dep("e")),
)


def plan(**fields: object) -> list[str]:
    return [t.key for t in Router(CAT).plan(request("main", **fields))]


def test_plan_is_the_models_deployments_then_each_fallback_models() -> None:
    assert plan() == ["main@a/a-model", "main@b/b-model"]
    assert plan(models=["main", "backup"]) == [
        "main@a/a-model",
        "main@b/b-model",
        "backup@c/c-model",
        "backup@d/d-model",
    ]


def test_preferences_apply_to_every_model_and_leave_the_body() -> None:
    req = request("main", models=["backup"], provider_zdr=True, provider={"sort": "price"})
    targets = Router(CAT).plan(req)
    assert [t.key for t in targets] == ["main@b/b-model", "backup@c/c-model"]
    assert set(req.body) == {"model", "messages"}


def test_allow_fallbacks_false_keeps_the_first_deployment_per_model() -> None:
    assert plan(provider_allow_fallbacks=False) == ["main@a/a-model"]


def test_unknown_fallback_model_is_a_400_naming_its_position() -> None:
    with pytest.raises(ValidationError) as exc:
        plan(models=["backup", "nope"])
    assert exc.value.param == "models[1]" and "'nope'" in exc.value.message


def test_unknown_primary_model_is_still_rejected() -> None:
    with pytest.raises((ValidationError, NotFoundError)):
        Router(CAT).plan(request("nope"))


def test_no_eligible_deployment_is_a_400_explaining_the_filters() -> None:
    with pytest.raises(ValidationError) as exc:
        plan(models=["other"], provider_only=["zz"])
    assert exc.value.code == "NO_ELIGIBLE_DEPLOYMENT"
    assert "'provider_only'" in exc.value.message and "other@e/e-model" in exc.value.message


def test_open_breakers_are_skipped_unless_every_candidate_is_open() -> None:
    health = HealthBoard(RoutingConfig(breaker_failures=1))
    router = Router(CAT, health=health)
    health.failed("main@a/a-model")
    assert [t.key for t in router.plan(request("main"))] == ["main@b/b-model"]
    health.failed("main@b/b-model")
    assert [t.key for t in router.plan(request("main"))] == ["main@a/a-model", "main@b/b-model"]
