"""CORS in front of the gateway (``server.cors``): preflights answered without a key, headers on answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import Gateway
from tollgate.simulator import SimServer

APP = "https://app.example.com"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def cors_gateway(tmp_path: Path, sim: SimServer) -> Iterator[Gateway]:
    cors = {"allow_origins": [APP], "allow_credentials": True, "max_age": 120}
    with Gateway(tmp_path, sim.base_url, cors=cors) as gw:
        yield gw


@pytest.mark.parametrize("path", ["/chat/completions", "/embeddings", "/messages", "/models"])
def test_preflight_is_answered_without_a_key(cors_gateway: Gateway, path: str) -> None:
    r = httpx.options(
        cors_gateway.base_url + path,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-max-age"] == "120"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "x-stainless-os" in r.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize("stream", [False, True])
def test_answers_to_an_allowed_origin_carry_cors_headers(cors_gateway: Gateway, stream: bool) -> None:
    key = cors_gateway.create_key()
    r = httpx.post(
        cors_gateway.base_url + "/chat/completions",
        headers={"Origin": APP, "Authorization": f"Bearer {key}"},
        json={"model": "sim-small", "messages": USER, "stream": stream},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP
    assert "X-Request-Id" in r.headers["access-control-expose-headers"]


def test_errors_to_an_allowed_origin_carry_cors_headers_too(cors_gateway: Gateway) -> None:
    r = httpx.post(cors_gateway.base_url + "/chat/completions", headers={"Origin": APP}, json={})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == APP


def test_a_preflight_from_another_origin_is_refused(cors_gateway: Gateway) -> None:
    r = httpx.options(
        cors_gateway.base_url + "/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def test_cors_is_off_by_default(gateway: Gateway) -> None:
    r = httpx.options(
        gateway.base_url + "/chat/completions",
        headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
