"""Layering (defaults, file, ACTIONHOOKS_<KEY> variables) and every kind of settings problem.

Each test injects its own environ, so nothing here reads or changes the process environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from actionhooks.errors import SettingsError, SettingsProblem
from actionhooks.settings import Settings, environment_warnings, load_settings


def problems_of(path: Path | None = None, environ: dict[str, str] | None = None) -> list[SettingsProblem]:
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ=environ or {})
    return caught.value.problems


# Layering


def test_no_file_and_no_variables_give_the_defaults() -> None:
    assert load_settings(environ={}) == Settings()


def test_an_explicit_path_is_read(write_config: Callable[..., Path]) -> None:
    path = write_config({"HOOK_RETRY_TIMES": 7}, name="ops.json")

    assert load_settings(path, environ={}).HOOK_RETRY_TIMES == 7


def test_actionhooks_config_names_the_file_when_no_path_is_given(write_config: Callable[..., Path]) -> None:
    write_config({"HOOK_RETRY_TIMES": 5}, name="cwd/main.json")
    path = write_config({"HOOK_RETRY_TIMES": 6}, name="from-env.json")

    assert load_settings(environ={"ACTIONHOOKS_CONFIG": str(path)}).HOOK_RETRY_TIMES == 6


def test_an_explicit_path_wins_over_actionhooks_config(write_config: Callable[..., Path]) -> None:
    chosen = write_config({"HOOK_RETRY_TIMES": 2}, name="chosen.json")
    other = write_config({"HOOK_RETRY_TIMES": 3}, name="other.json")

    assert load_settings(chosen, environ={"ACTIONHOOKS_CONFIG": str(other)}).HOOK_RETRY_TIMES == 2


def test_main_json_in_the_working_folder_is_read_by_default(write_config: Callable[..., Path]) -> None:
    write_config({"API_PORT": 9090}, name="cwd/main.json")

    assert load_settings(environ={}).API_PORT == 9090


def test_a_variable_overrides_the_file(write_config: Callable[..., Path]) -> None:
    path = write_config({"HOOK_RETRY_TIMES": 7, "API_PORT": 9090})

    settings = load_settings(path, environ={"ACTIONHOOKS_HOOK_RETRY_TIMES": "9"})

    assert (settings.HOOK_RETRY_TIMES, settings.API_PORT) == (9, 9090)


def test_variables_are_parsed_as_json_lists_booleans_and_numbers() -> None:
    settings = load_settings(
        None,
        environ={
            "ACTIONHOOKS_HOOK_RETRY_PERIOD_SEC": "[15,60,300]",
            "ACTIONHOOKS_HOOK_ALLOW_PRIVATE_TARGETS": "true",
            "ACTIONHOOKS_HOOK_RETRY_TIMES": "4",
            "ACTIONHOOKS_HOOK_CONTENT_CLEANUP_HOURS": "0.5",
        },
    )

    assert settings.HOOK_RETRY_PERIOD_SEC == [15, 60, 300]
    assert settings.HOOK_ALLOW_PRIVATE_TARGETS is True
    assert settings.HOOK_RETRY_TIMES == 4
    assert settings.HOOK_CONTENT_CLEANUP_HOURS == 0.5


def test_urls_and_host_names_in_variables_are_plain_strings() -> None:
    settings = load_settings(
        None,
        environ={
            "ACTIONHOOKS_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
            "ACTIONHOOKS_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
            "ACTIONHOOKS_API_HOST": "0.0.0.0",
        },
    )

    assert settings.BROKER_URL == "amqp://guest:guest@127.0.0.1:5672//"
    assert settings.DATABASE_URL == "postgresql://postgres@127.0.0.1:5432/postgres"
    assert settings.API_HOST == "0.0.0.0"


def test_a_text_setting_that_looks_like_a_number_stays_text() -> None:
    settings = load_settings(None, environ={"ACTIONHOOKS_DATA_DIR": "2024", "ACTIONHOOKS_API_HOST": "1"})

    assert (settings.DATA_DIR, settings.API_HOST) == ("2024", "1")


def test_a_number_variable_sets_a_one_item_retry_period() -> None:
    settings = load_settings(None, environ={"ACTIONHOOKS_HOOK_RETRY_PERIOD_SEC": "30"})

    assert settings.HOOK_RETRY_PERIOD_SEC == [30]


def test_the_test_harness_variables_are_not_settings() -> None:
    settings = load_settings(None, environ={"ACTIONHOOKS_TEST_KAFKA": "127.0.0.1:9092"})

    assert settings == Settings()


def test_variables_without_the_prefix_are_ignored() -> None:
    assert load_settings(None, environ={"HOOK_RETRY_TIMES": "9", "PATH": "/usr/bin"}) == Settings()


# Problems: each names its key


def test_an_unknown_key_in_the_file_is_reported_with_the_closest_key(write_config: Callable[..., Path]) -> None:
    [problem] = problems_of(write_config({"HOOK_RETRY_TIME": 4}))

    assert (problem.key, problem.suggestion) == ("HOOK_RETRY_TIME", "HOOK_RETRY_TIMES")
    assert "did you mean 'HOOK_RETRY_TIMES'?" in str(problem)


def test_a_lower_case_key_is_unknown_and_the_upper_case_one_is_suggested(write_config: Callable[..., Path]) -> None:
    [problem] = problems_of(write_config({"api_port": 8080}))

    assert (problem.key, problem.suggestion) == ("api_port", "API_PORT")


def test_an_unknown_key_unlike_any_other_gets_no_suggestion(write_config: Callable[..., Path]) -> None:
    [problem] = problems_of(write_config({"ZZZ": 1}))

    assert (problem.key, problem.message, problem.suggestion) == ("ZZZ", "unknown key", None)


def test_an_unknown_variable_is_a_warning_with_the_closest_variable_never_an_error() -> None:
    environ = {"ACTIONHOOKS_HOOK_RETRY_PERIOD": "15"}

    assert load_settings(None, environ=environ) == Settings()
    [warning] = environment_warnings(environ)
    assert warning.key == "ACTIONHOOKS_HOOK_RETRY_PERIOD"
    assert warning.suggestion == "ACTIONHOOKS_HOOK_RETRY_PERIOD_SEC"


# What Kubernetes injects into every pod of a namespace with a Service named `actionhooks`.
KUBERNETES_SERVICE_VARIABLES = {
    "ACTIONHOOKS_PORT": "tcp://10.0.0.1:8080",
    "ACTIONHOOKS_SERVICE_HOST": "10.0.0.1",
    "ACTIONHOOKS_SERVICE_PORT": "8080",
    "ACTIONHOOKS_SERVICE_PORT_HTTP": "8080",
    "ACTIONHOOKS_PORT_8080_TCP": "tcp://10.0.0.1:8080",
    "ACTIONHOOKS_PORT_8080_TCP_PROTO": "tcp",
    "ACTIONHOOKS_PORT_8080_TCP_PORT": "8080",
    "ACTIONHOOKS_PORT_8080_TCP_ADDR": "10.0.0.1",
}


def test_kubernetes_service_variables_are_listed_as_warnings_and_the_real_settings_still_apply() -> None:
    environ = {**KUBERNETES_SERVICE_VARIABLES, "ACTIONHOOKS_API_PORT": "9090"}

    settings = load_settings(None, environ=environ)

    assert settings.API_PORT == 9090
    assert {w.key for w in environment_warnings(environ)} == set(KUBERNETES_SERVICE_VARIABLES)


def test_a_known_variable_with_a_bad_value_is_still_an_error_beside_unknown_ones() -> None:
    [problem] = problems_of(environ={**KUBERNETES_SERVICE_VARIABLES, "ACTIONHOOKS_API_PORT": "tcp://10.0.0.1:8080"})

    assert problem.key == "API_PORT"


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"HOOK_RETRY_TIMES": "4"}, "HOOK_RETRY_TIMES"),
        ({"HOOK_RETRY_TIMES": 4.5}, "HOOK_RETRY_TIMES"),
        ({"HOOK_RETRY_TIMES": True}, "HOOK_RETRY_TIMES"),
        ({"HOOK_HTTP_TIMEOUT_SEC": "10"}, "HOOK_HTTP_TIMEOUT_SEC"),
        ({"HOOK_ALLOW_PRIVATE_TARGETS": "false"}, "HOOK_ALLOW_PRIVATE_TARGETS"),
        ({"HOOK_ALLOW_PRIVATE_TARGETS": 0}, "HOOK_ALLOW_PRIVATE_TARGETS"),
        ({"HOOK_RETRY_PERIOD_SEC": "15"}, "HOOK_RETRY_PERIOD_SEC"),
        ({"HOOK_RETRY_PERIOD_SEC": ["15"]}, "HOOK_RETRY_PERIOD_SEC"),
        ({"API_PORT": "8080"}, "API_PORT"),
        ({"API_HOST": 127}, "API_HOST"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
    ],
)
def test_a_value_of_the_wrong_type_in_the_file_is_an_error_naming_its_key(
    write_config: Callable[..., Path], values: dict[str, object], key: str
) -> None:
    problems = problems_of(write_config(values))

    assert [problem.key for problem in problems] == [key]


def test_a_wrong_type_shows_the_value_that_was_given(write_config: Callable[..., Path]) -> None:
    [problem] = problems_of(write_config({"HOOK_RETRY_TIMES": "4"}))

    assert "integer" in problem.message
    assert "'4'" in problem.message


def test_a_bad_variable_is_reported_under_its_key_and_names_the_variable() -> None:
    [problem] = problems_of(environ={"ACTIONHOOKS_HOOK_RETRY_TIMES": "many"})

    assert problem.key == "HOOK_RETRY_TIMES"
    assert "ACTIONHOOKS_HOOK_RETRY_TIMES" in problem.message


@pytest.mark.parametrize(
    ("values", "key", "words"),
    [
        ({"HOOK_RETRY_TIMES": 0}, "HOOK_RETRY_TIMES", "greater than or equal to 1"),
        ({"API_PORT": 70000}, "API_PORT", "less than or equal to 65535"),
        ({"HOOK_CONTENT_CLEANUP_HOURS": 0}, "HOOK_CONTENT_CLEANUP_HOURS", "greater than 0"),
        ({"HOOK_HTTP_TIMEOUT_SEC": -1}, "HOOK_HTTP_TIMEOUT_SEC", "greater than 0"),
        ({"HOOK_RETRY_PERIOD_SEC": []}, "HOOK_RETRY_PERIOD_SEC", "at least 1 item"),
        ({"HOOK_RETRY_PERIOD_SEC": [15, -60]}, "HOOK_RETRY_PERIOD_SEC", "[1] Input should be greater than 0"),
        ({"HOOK_RETRY_PERIOD_SEC": -15}, "HOOK_RETRY_PERIOD_SEC", "greater than 0"),
        ({"DATABASE_URL": "mysql://127.0.0.1/db"}, "DATABASE_URL", "sqlite:/// or postgresql://"),
    ],
)
def test_a_value_out_of_range_is_an_error_naming_its_key_and_the_bound(
    write_config: Callable[..., Path], values: dict[str, object], key: str, words: str
) -> None:
    [problem] = problems_of(write_config(values))

    assert problem.key == key
    assert words in problem.message


def test_infinity_is_not_a_retention(write_config: Callable[..., Path]) -> None:
    # Python's json accepts the non-standard Infinity and NaN, which pass a plain "> 0" check.
    [problem] = problems_of(write_config(text='{"HOOK_CONTENT_CLEANUP_HOURS": Infinity}'))

    assert problem.key == "HOOK_CONTENT_CLEANUP_HOURS"


def test_invalid_json_is_reported_with_its_line_and_column(write_config: Callable[..., Path]) -> None:
    [problem] = problems_of(write_config(text='{\n  "HOOK_RETRY_TIMES": 4,\n  "API_PORT": \n}'))

    assert problem.key == "<file>"
    assert "line 4 column 1" in problem.message


def test_a_file_that_is_not_a_json_object_is_an_error(write_config: Callable[..., Path]) -> None:
    [problem] = problems_of(write_config([{"HOOK_RETRY_TIMES": 4}]))

    assert problem.key == "<file>"
    assert "JSON object" in problem.message


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path / "missing.json")

    assert problem.key == "<file>"
    assert "missing.json" in problem.message
    assert "does not exist" in problem.message


def test_a_missing_file_named_by_actionhooks_config_is_an_error(tmp_path: Path) -> None:
    [problem] = problems_of(environ={"ACTIONHOOKS_CONFIG": str(tmp_path / "gone.json")})

    assert "gone.json" in problem.message


def test_every_problem_of_the_file_and_the_environment_is_reported_at_once(write_config: Callable[..., Path]) -> None:
    path = write_config({"HOOK_RETRY_TIME": 4, "API_PORT": "8080", "HOOK_RETRY_PERIOD_SEC": []})

    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={"ACTIONHOOKS_HOOK_HTTP_TIMEOUT_SEC": "0", "ACTIONHOOKS_BROKERURL": "x"})

    keys = {problem.key for problem in caught.value.problems}
    assert keys == {
        "HOOK_RETRY_TIME",
        "API_PORT",
        "HOOK_RETRY_PERIOD_SEC",
        "HOOK_HTTP_TIMEOUT_SEC",
    }
    assert caught.value.source == str(path)
    assert "4 settings problem(s)" in str(caught.value)
    assert all(key in str(caught.value) for key in keys)
