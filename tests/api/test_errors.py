"""Error shapes by path: unknown ``/v1/*`` routes answer in OpenAI's shape, so SDKs can read them."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.gateway import Gateway


@pytest.mark.parametrize("path", ["/v1/nope", "/api/v1/audio/speech", "/v1/moderations"])
def test_unknown_v1_routes_answer_in_openais_shape(gateway: Gateway, path: str) -> None:
    r = httpx.post(gateway.server.url + path, json={})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["type"] == "not_found_error" and error["code"] == "NOT_FOUND" and path in error["message"]


def test_the_sdk_reads_an_unknown_route_as_not_found(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        gateway.client(gateway.create_key()).moderations.create(input="hi")
    assert "No route" in exc.value.message


@pytest.mark.parametrize(
    "path", ["/v1/classifiers/none/extra", "/v1/batch/none/extra", "/api/v1/batch/x/y/z"]
)
def test_management_and_batch_routes_keep_their_own_shape(gateway: Gateway, path: str) -> None:
    r = httpx.get(gateway.server.url + path)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND" and "docs_url" in r.json()


def test_openais_batches_and_files_paths_answer_in_openais_shape(gateway: Gateway) -> None:
    for path in ("/v1/batches", "/v1/files/x"):
        r = httpx.get(gateway.server.url + path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND", path
