"""tollgate/services/pipeline.py through a running gateway: what a refused key leaves behind, and what a key
limited to some models is told."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.storage.test_sql import pg_database, pg_url, run_in_thread  # noqa: F401  (pg_database: a fixture)
from tests.support.databases import empty
from tests.support.gateway import PRICES, Gateway
from tollgate.accounts.keys import PREFIX_LEN
from tollgate.simulator import SimServer

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, tmp_path: Path, sim: SimServer) -> Iterator[Gateway]:
    db_url = None
    if request.param == "postgresql":
        db_url = pg_url(request.getfixturevalue("pg_database"))
        run_in_thread(empty(db_url))
    with Gateway(tmp_path, sim.base_url, key_cache_ttl=60, db_url=db_url) as g:
        yield g


def test_invalid_keys_leave_no_usage_row_and_are_counted(both: Gateway) -> None:
    valid = both.create_key()
    auth = both.app.state.completions.auth
    stored = valid[:PREFIX_LEN]
    unknown = "tg-" + secrets.token_urlsafe(32)
    wrong = stored + "w" * (len(valid) - PREFIX_LEN)
    body = {"model": "sim-small", "messages": MESSAGES, "max_tokens": 4}
    with httpx.Client(base_url=both.base_url, timeout=30) as http:
        for i in range(1000):
            key = (unknown, wrong, "sk-not-ours")[i % 3]
            r = http.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_API_KEY"
        assert http.post("/chat/completions", json=body).status_code == 401, "no key at all"
    with pytest.raises(openai.AuthenticationError):
        both.client(unknown).chat.completions.create(model="sim-small", messages=MESSAGES, max_tokens=4)
    assert auth.invalid_attempts == 1002
    assert auth.key_lookups == 2, "one lookup per prefix: the unknown one and the real one"
    ok = both.client(valid).chat.completions.create(model="sim-small", messages=MESSAGES, max_tokens=4)
    assert ok.choices
    rows = both.usage_rows(expect=1)
    assert [(r.status, r.key_id is not None) for r in rows] == [(200, True)], "only the valid request's row"


@pytest.fixture
def catalogue(tmp_path: Path, sim: SimServer) -> Iterator[Gateway]:
    """A gateway with 30 models, m00 .. m29."""
    models = [
        {"id": f"m{i:02d}", "pricing": PRICES, "deployments": [{"provider": "sim", "model": "upstream"}]}
        for i in range(30)
    ]
    with Gateway(tmp_path, sim.base_url, sections={"models": models}) as g:
        yield g


def test_a_limited_key_is_told_only_its_own_models_at_most_twenty(catalogue: Gateway) -> None:
    owner = catalogue.create_key(manager=True)
    mine = [f"m{i:02d}" for i in range(25)]
    made = httpx.post(
        catalogue.base_url + "/keys",
        headers={"Authorization": f"Bearer {owner}"},
        json={"allowed_models": mine},
        timeout=30,
    ).json()
    client = catalogue.client(made["key"])
    for asked in ("no-such-model", "m29"):
        with pytest.raises(openai.PermissionDeniedError) as info:
            client.chat.completions.create(model=asked, messages=MESSAGES, max_tokens=4)
        message = info.value.message
        assert f"may not use {asked}" in message
        assert "m00, m01" in message and "m19" in message and "and 5 more" in message
        assert "m20" not in message and "m29" not in message.replace(f"use {asked}", ""), message
    with pytest.raises(openai.PermissionDeniedError, match="may not use m28"):
        client.chat.completions.create(
            model="m00", messages=MESSAGES, max_tokens=4, extra_body={"models": ["m28"]}
        )
    assert client.chat.completions.create(model="m03", messages=MESSAGES, max_tokens=4).choices
    unknown = catalogue.client(owner).chat.completions
    with pytest.raises(openai.BadRequestError, match="not available"):
        unknown.create(model="no-such-model", messages=MESSAGES, max_tokens=4)
