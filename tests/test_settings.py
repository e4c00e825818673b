"""tollgate/settings.py: YAML + environment into a validated ``Config``; every failure names file and key."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from tollgate.errors import ConfigError
from tollgate.settings import (
    DEFAULT_DATABASE_URL,
    Pricing,
    Settings,
    async_database_url,
    interpolate,
    load_settings,
    parse_config,
)

SOURCE = "conf/tollgate.yaml"

MINIMAL = """
providers:
  - {name: up, base_url: "https://up.example/v1/", api_key: k}
models:
  - id: m1
    pricing: {prompt: "0.000001", completion: "0.000002"}
    deployments: [{provider: up, model: upstream-m1}]
"""


def config_error(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), SOURCE, environ or {})
    message = str(info.value)
    assert SOURCE in message, message
    return message


def write(tmp_path: Path, text: str, name: str = "tollgate.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# parsing ------------------------------------------------------------------------------------------------


def test_minimal_config_parses_with_defaults() -> None:
    config = parse_config(MINIMAL, SOURCE, {})
    assert config.database_url == DEFAULT_DATABASE_URL
    assert config.server.port == 8080
    assert config.server.grace_buffer == Decimal(0)
    (provider,) = config.providers
    assert provider.kind == "openai"
    assert provider.base_url == "https://up.example/v1", "the trailing slash is stripped"
    (model,) = config.models
    assert model.display_name == "m1"
    assert model.deployments[0].model == "upstream-m1"
    assert model.deployments[0].pricing is None


def test_a_provider_proxy_comes_from_the_environment_and_empty_means_none() -> None:
    text = MINIMAL.replace("api_key: k}", 'api_key: k, proxy: "${HTTPS_PROXY:-}"}')
    assert parse_config(text, SOURCE, {}).providers[0].proxy is None
    configured = parse_config(text, SOURCE, {"HTTPS_PROXY": "http://user:pw@proxy.corp:3128"})
    assert configured.providers[0].proxy == "http://user:pw@proxy.corp:3128"


def test_a_proxy_that_is_not_an_http_url_is_refused_naming_the_key() -> None:
    message = config_error(MINIMAL.replace("api_key: k}", 'api_key: k, proxy: "socks5://proxy.corp:1080"}'))
    assert "providers.0.proxy" in message and "starts with http://" in message


def test_empty_file_is_an_empty_config() -> None:
    config = parse_config("", SOURCE, {})
    assert config.providers == [] and config.models == []


def test_server_section_is_read() -> None:
    config = parse_config(
        'server: {host: 0.0.0.0, port: 9000, grace_buffer: "0.5", usage_batch_size: 7}', SOURCE, {}
    )
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 9000
    assert config.server.grace_buffer == Decimal("0.5")
    assert config.server.usage_batch_size == 7


def test_http_and_document_limits_are_read_and_checked() -> None:
    config = parse_config(
        "server: {max_header_bytes: 8192, header_timeout: 2.5, max_connections: null}\n"
        "classification: {documents: {max_pages: 5, timeout: 3}}",
        SOURCE,
        {},
    )
    assert (config.server.max_header_bytes, config.server.header_timeout) == (8192, 2.5)
    assert config.server.max_connections is None and config.server.body_timeout == 60
    documents = config.classification.documents
    assert (documents.max_pages, documents.timeout, documents.max_xml_bytes) == (5, 3, 10_000_000)
    assert "server.max_header_bytes" in config_error("server: {max_header_bytes: 10}")
    assert "classification.documents.timeout" in config_error("classification: {documents: {timeout: 0}}")
    assert "classification.documents.max_pgs" in config_error("classification: {documents: {max_pgs: 5}}")


# prices -------------------------------------------------------------------------------------------------


def test_prices_are_exact_decimals_from_strings() -> None:
    config = parse_config(
        """
        providers: [{name: up, base_url: "http://up"}]
        models:
          - id: m
            pricing: {prompt: "0.0000001", completion: "0.0000004", input_cache_read: "0.00000005",
                      request: "0.001", image: "0.002"}
            deployments: [{provider: up, model: m}]
        """,
        SOURCE,
        {},
    )
    pricing = config.models[0].pricing
    assert pricing.prompt == Decimal("0.0000001")
    assert pricing.completion == Decimal("0.0000004")
    assert pricing.cache_read == Decimal("0.00000005")
    assert pricing.request == Decimal("0.001")
    assert pricing.image == Decimal("0.002")
    assert all(isinstance(v, Decimal) for v in (pricing.prompt, pricing.completion, pricing.request))


def test_integer_prices_are_accepted() -> None:
    config = parse_config(
        "providers: [{name: up, base_url: 'http://up'}]\n"
        "models: [{id: m, pricing: {request: 2}, deployments: [{provider: up, model: m}]}]",
        SOURCE,
        {},
    )
    assert config.models[0].pricing.request == Decimal(2)


def test_cache_read_price_defaults_to_prompt_price() -> None:
    assert Pricing(prompt=Decimal("0.3")).cache_read == Decimal("0.3")
    assert Pricing(prompt=Decimal("0.3"), input_cache_read=Decimal("0.1")).cache_read == Decimal("0.1")


def test_float_price_is_refused_with_a_quoting_hint() -> None:
    message = config_error(
        """
        providers: [{name: up, base_url: "http://up"}]
        models: [{id: m, pricing: {prompt: 0.5}, deployments: [{provider: up, model: m}]}]
        """
    )
    assert "models.0.pricing.prompt" in message
    assert "quoted decimal string" in message
    assert '"0.5"' in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [('"-1"', "non-negative"), ('"abc"', "not a decimal number"), ('"NaN"', "non-negative")],
)
def test_invalid_price_strings_are_refused(value: str, problem: str) -> None:
    message = config_error(
        f"""
        providers: [{{name: up, base_url: "http://up"}}]
        models: [{{id: m, pricing: {{completion: {value}}}, deployments: [{{provider: up, model: m}}]}}]
        """
    )
    assert "models.0.pricing.completion" in message
    assert problem in message


def test_deployment_price_override_is_checked_too() -> None:
    message = config_error(
        """
        providers: [{name: up, base_url: "http://up"}]
        models: [{id: m, deployments: [{provider: up, model: m, pricing: {prompt: 1.5}}]}]
        """
    )
    assert "models.0.deployments.0.pricing.prompt" in message


# interpolation ------------------------------------------------------------------------------------------


def test_interpolate_replaces_set_variables() -> None:
    assert interpolate("a=${A} b=${B_2}", {"A": "1", "B_2": "two"}) == "a=1 b=two"


def test_interpolate_unset_variable_without_default_is_empty() -> None:
    assert interpolate("[${MISSING}]", {}) == "[]"


def test_interpolate_default_used_when_unset_or_empty() -> None:
    assert interpolate("${X:-fallback}", {}) == "fallback"
    assert interpolate("${X:-fallback}", {"X": ""}) == "fallback"
    assert interpolate("${X:-fallback}", {"X": "set"}) == "set"
    assert interpolate("${X:-}", {}) == ""


def test_interpolate_default_may_contain_url_characters() -> None:
    assert interpolate("${U:-http://127.0.0.1:9999/v1}", {}) == "http://127.0.0.1:9999/v1"


def test_interpolate_leaves_non_variables_alone() -> None:
    assert interpolate("$HOME ${1BAD} ${", {"HOME": "x"}) == "$HOME ${1BAD} ${"


def test_variables_are_interpolated_before_yaml_parsing() -> None:
    config = parse_config(
        """
        database_url: ${DB:-sqlite+aiosqlite:///x.db}
        server: {port: ${PORT}}
        providers: [{name: up, base_url: "${UP_URL:-http://default}"}]
        """,
        SOURCE,
        {"PORT": "9100", "UP_URL": "https://env.example"},
    )
    assert config.database_url == "sqlite+aiosqlite:///x.db"
    assert config.server.port == 9100
    assert config.providers[0].base_url == "https://env.example"


# environment resolution ---------------------------------------------------------------------------------


def test_api_key_env_is_resolved_from_the_given_environ(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        providers:
          - {name: literal, base_url: "http://a", api_key: lit, api_key_env: IGNORED}
          - {name: from_env, base_url: "http://b", api_key_env: B_KEY}
          - {name: unset_env, base_url: "http://c", api_key_env: C_KEY}
          - {name: empty_env, base_url: "http://d", api_key_env: D_KEY}
          - {name: keyless, base_url: "http://e"}
        """,
    )
    settings = load_settings(str(path), {"B_KEY": "secret-b", "D_KEY": "", "IGNORED": "nope"})
    assert settings.provider_keys == {
        "literal": "lit",
        "from_env": "secret-b",
        "unset_env": None,
        "empty_env": None,
        "keyless": None,
    }


def test_database_url_env_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "database_url: sqlite+aiosqlite:///file.db\n")
    assert load_settings(str(path), {}).database_url == "sqlite+aiosqlite:///file.db"
    overridden = load_settings(str(path), {"TOLLGATE_DATABASE_URL": "postgresql+asyncpg://db/x"})
    assert overridden.database_url == "postgresql+asyncpg://db/x"
    assert overridden.config.database_url == "sqlite+aiosqlite:///file.db"
    assert (
        load_settings(str(path), {"TOLLGATE_DATABASE_URL": ""}).database_url == "sqlite+aiosqlite:///file.db"
    )


def test_config_path_comes_from_environ_when_not_given(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 1234}\n")
    settings = load_settings(None, {"TOLLGATE_CONFIG": str(path)})
    assert settings.source == str(path)
    assert settings.server.port == 1234


def test_explicit_path_wins_over_environ(tmp_path: Path) -> None:
    explicit = write(tmp_path, "server: {port: 1111}\n", "a.yaml")
    other = write(tmp_path, "server: {port: 2222}\n", "b.yaml")
    settings = load_settings(str(explicit), {"TOLLGATE_CONFIG": str(other)})
    assert settings.server.port == 1111


def test_bundled_example_config_loads() -> None:
    settings = load_settings(None, {})
    assert "example_config.yaml" in settings.source
    assert settings.database_url == DEFAULT_DATABASE_URL
    ids = [m.id for m in settings.config.models]
    assert "sim-small" in ids
    assert settings.provider_keys["simulator"] == "sim"
    assert settings.provider_keys["openai"] is None
    sim_small = next(m for m in settings.config.models if m.id == "sim-small")
    assert sim_small.pricing.prompt == Decimal("0.0000001")


def test_bundled_example_config_follows_the_environment() -> None:
    settings = load_settings(
        None,
        {
            "OPENAI_API_KEY": "sk-test",
            "TOLLGATE_SIMULATOR_URL": "http://sim.local:1/v1",
            "TOLLGATE_DATABASE_URL": "sqlite+aiosqlite:///other.db",
        },
    )
    assert settings.provider_keys["openai"] == "sk-test"
    simulator = next(p for p in settings.config.providers if p.name == "simulator")
    assert simulator.base_url == "http://sim.local:1/v1"
    assert settings.database_url == "sqlite+aiosqlite:///other.db"


# errors -------------------------------------------------------------------------------------------------


def test_unknown_key_is_named_with_its_path() -> None:
    message = config_error("server: {hots: 127.0.0.1}\n")
    assert "server.hots" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_nested_key_is_named_with_its_path() -> None:
    message = config_error(
        """
        providers: [{name: up, base_url: "http://up"}]
        models: [{id: m, pricing: {promt: "1"}, deployments: [{provider: up, model: m}]}]
        """
    )
    assert "models.0.pricing.promt" in message


def test_unknown_provider_in_a_deployment() -> None:
    message = config_error(
        """
        providers: [{name: up, base_url: "http://up"}]
        models:
          - {id: a, deployments: [{provider: up, model: a}]}
          - {id: b, deployments: [{provider: up, model: b}, {provider: nowhere, model: b}]}
        """
    )
    assert "models.1.deployments.1.provider" in message
    assert "'nowhere' is not a declared provider" in message


def test_duplicate_model_id() -> None:
    message = config_error(
        """
        providers: [{name: up, base_url: "http://up"}]
        models:
          - {id: same, deployments: [{provider: up, model: a}]}
          - {id: other, deployments: [{provider: up, model: b}]}
          - {id: same, deployments: [{provider: up, model: c}]}
        """
    )
    assert "models.2.id" in message
    assert "must be unique" in message and "'same'" in message and "models.0" in message


def test_duplicate_provider_name() -> None:
    message = config_error(
        """
        providers: [{name: up, base_url: "http://a"}, {name: up, base_url: "http://b"}]
        """
    )
    assert "providers.1.name" in message
    assert "must be unique" in message


@pytest.mark.parametrize("url", ["ftp://up.example", "up.example/v1", ""])
def test_bad_base_url(url: str) -> None:
    message = config_error(f'providers: [{{name: up, base_url: "{url}"}}]\n')
    assert "providers.0.base_url" in message
    assert "http:// or https://" in message


def test_missing_required_field_is_named() -> None:
    message = config_error("providers: [{name: up}]\n")
    assert "providers.0.base_url" in message
    assert "Field required" in message


def test_model_without_deployments_is_refused() -> None:
    message = config_error("models: [{id: m, deployments: []}]\n")
    assert "models.0.deployments" in message


def test_invalid_yaml() -> None:
    message = config_error("providers: [\n  {name: up\n")
    assert "not valid YAML" in message


def test_top_level_must_be_a_mapping() -> None:
    message = config_error("- a\n- b\n")
    assert "top level must be a mapping" in message


def test_every_error_is_listed() -> None:
    message = config_error('server: {port: -1, bogus: 1}\nproviders: [{name: up, base_url: "x"}]\n')
    assert "server.port" in message
    assert "server.bogus" in message
    assert "providers.0.base_url" in message


def test_error_names_the_file_it_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {nope: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), {})
    assert str(path) in str(info.value)
    assert "server.nope" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings(str(missing), {})
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path), {})


# classification -----------------------------------------------------------------------------------------


def test_classification_defaults_to_the_local_backend_with_prices_by_priority() -> None:
    cfg = parse_config(MINIMAL, SOURCE, {}).classification
    assert cfg.backend == "local" and cfg.llm_model is None
    assert (cfg.prices.fast, cfg.prices.standard, cfg.prices.batch) == (
        Decimal("0.0000002"),
        Decimal("0.0000001"),
        Decimal("0.00000005"),
    )


def test_classification_llm_backend_needs_a_declared_model() -> None:
    cfg = parse_config(MINIMAL + "classification: {backend: llm, llm_model: m1}\n", SOURCE, {}).classification
    assert cfg.backend == "llm" and cfg.llm_model == "m1"
    assert "llm_model: the llm backend needs a model id" in config_error(
        MINIMAL + "classification: {backend: llm}\n"
    )
    message = config_error(MINIMAL + "classification: {llm_model: nope}\n")
    assert "classification.llm_model: 'nope' is not a declared model" in message


def test_the_usage_journal_lives_next_to_the_sqlite_file_or_the_config_file(tmp_path: Path) -> None:
    def journal_dir(database_url: str, source: str, **server: str) -> Path | None:
        config = parse_config(MINIMAL, source, {})
        config = config.model_copy(
            update={"database_url": database_url, "server": config.server.model_copy(update=server)}
        )
        return Settings(config, source=source, environ={}).journal_dir

    assert journal_dir("sqlite+aiosqlite:///./tollgate.db", "<bundled>") == Path("journal")
    assert journal_dir(f"sqlite+aiosqlite:///{tmp_path}/db/t.db", "<bundled>") == tmp_path / "db" / "journal"
    assert journal_dir("sqlite+aiosqlite://", "<bundled>") is None  # in memory: nothing outlives the process
    config_file = tmp_path / "conf" / "tollgate.yaml"
    config_file.parent.mkdir()
    config_file.write_text(MINIMAL)
    pg = "postgresql+asyncpg://u@db/tollgate"
    assert journal_dir(pg, str(config_file)) == tmp_path / "conf" / "journal"
    assert journal_dir(pg, "<bundled>") == Path("journal")
    assert journal_dir(pg, str(config_file), journal_dir=str(tmp_path / "j")) == tmp_path / "j"
    assert journal_dir(pg, str(config_file), journal_dir="") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///tollgate.db", "sqlite+aiosqlite:///tollgate.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("postgres://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgresql+psycopg2://h/d", "postgresql+asyncpg://h/d"),
        ("postgresql+psycopg://h/d", "postgresql+psycopg://h/d"),
    ],
)
def test_database_urls_get_the_async_driver(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://h/d", "tollgate.db", ""])
def test_unusable_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        async_database_url(url)
