"""The Settings model on its own: the documented defaults (README, Configuration reference), value shapes and bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from actionhooks.settings import Settings


def test_defaults_are_the_contracts_embedded_defaults() -> None:
    settings = Settings()

    assert settings.HOOK_RETRY_TIMES == 4
    assert settings.HOOK_RETRY_PERIOD_SEC == [15]
    assert settings.HOOK_CONTENT_CLEANUP_HOURS == 72
    assert settings.HOOK_HTTP_TIMEOUT_SEC == 10
    assert settings.HOOK_ALLOW_PRIVATE_TARGETS is False
    assert settings.DATABASE_URL == "sqlite:///data/actionhooks.db"
    assert settings.BROKER_URL == ""
    assert settings.embedded_broker
    assert (settings.API_HOST, settings.API_PORT) == ("127.0.0.1", 8080)


def test_every_key_has_a_description_for_the_configuration_reference() -> None:
    undocumented = [key for key, field in Settings.model_fields.items() if not field.description]

    assert undocumented == []


def test_a_single_retry_period_becomes_a_one_item_list() -> None:
    assert Settings(HOOK_RETRY_PERIOD_SEC=15).HOOK_RETRY_PERIOD_SEC == [15.0]


def test_a_list_of_retry_periods_is_kept_in_order() -> None:
    assert Settings(HOOK_RETRY_PERIOD_SEC=[15, 60, 300]).HOOK_RETRY_PERIOD_SEC == [15.0, 60.0, 300.0]


def test_content_retention_accepts_a_fraction_of_an_hour() -> None:
    assert Settings(HOOK_CONTENT_CLEANUP_HOURS=0.25).HOOK_CONTENT_CLEANUP_HOURS == 0.25


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HOOK_RETRY_TIMES", 0),
        ("HOOK_RETRY_PERIOD_SEC", []),
        ("HOOK_RETRY_PERIOD_SEC", [15, -1]),
        ("HOOK_RETRY_PERIOD_SEC", 0),
        ("HOOK_CONTENT_CLEANUP_HOURS", 0),
        ("HOOK_CONTENT_CLEANUP_HOURS", float("inf")),
        ("HOOK_HTTP_TIMEOUT_SEC", float("nan")),
        ("API_PORT", 65536),
        ("HOOK_PERMANENT_STATUS_CODES", [200]),
        ("DATABASE_URL", "mysql://127.0.0.1/db"),
        ("BROKER_URL", "kafka://127.0.0.1:9092"),
        ("WORKER_POOL", "gevent"),
        ("ROUTE_INTERVAL_SEC", 0),
        ("ROUTE_INTERVAL_SEC", 60),
        ("ROUTE_INTERVAL_SEC", float("nan")),
        ("QUARANTINE_KEEP_HOURS", 0),
        ("QUARANTINE_KEEP_HOURS", 10**6),
        ("QUARANTINE_KEEP_HOURS", float("inf")),
    ],
)
def test_a_value_out_of_its_range_is_rejected_naming_its_key(key: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({key: value})

    assert [error["loc"][0] for error in caught.value.errors()] == [key]


def test_settings_cannot_be_changed_once_built() -> None:
    settings = Settings()

    with pytest.raises(ValidationError):
        settings.HOOK_RETRY_TIMES = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgres://postgres@127.0.0.1/db", "postgresql+psycopg://postgres@127.0.0.1/db"),
        ("postgresql://postgres@127.0.0.1/db", "postgresql+psycopg://postgres@127.0.0.1/db"),
        ("sqlite:///data/actionhooks.db", "sqlite:///data/actionhooks.db"),
    ],
)
def test_postgresql_urls_use_the_installed_psycopg_3_driver(given: str, used: str) -> None:
    assert Settings(DATABASE_URL=given).database_url == used


def test_an_empty_broker_url_means_the_embedded_broker_under_the_data_folder(tmp_path) -> None:
    settings = Settings(DATA_DIR=str(tmp_path))

    assert settings.broker_url == f"sqlite:///{tmp_path / 'broker.sqlite'}"
    assert not Settings(BROKER_URL="redis://127.0.0.1:6379/0").embedded_broker
