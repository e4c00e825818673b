"""tollgate/cli.py: ``tollgate keys list`` shows each key's tier and the limits it adds up to; ``keys create
--manager`` makes a key that may create any key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml
from typer.testing import CliRunner

from tests.support.gateway import Gateway, gateway_config
from tollgate.cli import app
from tollgate.simulator import SimServer


def config(tmp_path: Path, **server: object) -> str:
    path = tmp_path / "tollgate.yaml"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    path.write_text(yaml.safe_dump(gateway_config("http://127.0.0.1:9/v1", db_url, **server)))
    return str(path)


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_list_shows_tier_and_limits_with_overrides_and_the_default_tier(tmp_path: Path) -> None:
    cfg = config(tmp_path, default_tier="public")
    cli("keys", "create", "--name", "dev", "--tier", "developer", "--rpm", "7", "-c", cfg)
    cli("keys", "create", "--name", "plain", "-c", cfg)
    lines = cli("keys", "list", "-c", cfg).splitlines()
    assert "tier developer: 7 rpm, 500000 tpm, 5 concurrent" in lines[0] and "dev" in lines[0]
    assert "tier public (default): 30 rpm, 150000 tpm, 2 concurrent" in lines[1]
    rows = json.loads(cli("keys", "list", "--json", "-c", cfg))
    assert rows[0]["tier"] == "developer"
    assert rows[0]["rate_limits"] == {
        "requests_per_minute": 7,
        "tokens_per_minute": None,
        "concurrent_requests": None,
    }
    assert rows[0]["effective_limits"] == {
        "requests_per_minute": 7,
        "tokens_per_minute": 500_000,
        "concurrent_requests": 5,
    }
    assert rows[1]["tier"] is None and rows[1]["effective_tier"] == "public"


def test_keys_list_says_unlimited_without_any_tier(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cli("keys", "create", "-c", cfg)
    assert "no tier: unlimited rpm, unlimited tpm, unlimited concurrent" in cli("keys", "list", "-c", cfg)
    assert json.loads(cli("keys", "list", "--json", "-c", cfg))[0]["effective_limits"] == {
        "requests_per_minute": None,
        "tokens_per_minute": None,
        "concurrent_requests": None,
    }


def test_keys_create_manager_makes_a_key_that_may_create_any_key(tmp_path: Path, sim: SimServer) -> None:
    with Gateway(tmp_path, sim.base_url) as gw:
        made = json.loads(cli("keys", "create", "--manager", "--json", "-c", str(gw.config_path)))
        plain = json.loads(cli("keys", "create", "--tier", "public", "--json", "-c", str(gw.config_path)))
        assert made["manager"] is True and plain["manager"] is False
        listed = cli("keys", "list", "-c", str(gw.config_path)).splitlines()
        assert "(manager)" in listed[0] and "(manager)" not in listed[1]
        body = {"tier": "enterprise", "log_inputs": True}
        for key, status in ((made["key"], 201), (plain["key"], 403)):
            r = httpx.post(
                gw.base_url + "/keys", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30
            )
            assert r.status_code == status, r.text


def test_keys_create_refuses_limits_the_database_cannot_hold(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--rpm", str(2**31), "-c", config(tmp_path)])
    assert result.exit_code == 2 and "2147483647" in result.output


def test_database_urls_as_users_write_them_work(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    result = CliRunner().invoke(
        app, ["keys", "create", "--json", "-c", cfg], env={"TOLLGATE_DATABASE_URL": url}
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["key"] and (tmp_path / "plain.db").exists()


def test_a_bad_database_url_is_one_clear_line(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    env = {"TOLLGATE_DATABASE_URL": "mysql://root:secret@db/x"}
    result = CliRunner().invoke(app, ["keys", "list", "-c", cfg], env=env)
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert "sqlite:///" in line and "postgresql://" in line and "secret" not in line
