"""Settings layering: defaults, then the file, then ACTIONHOOKS_<KEY> environment variables.

Every problem of every layer is gathered and raised as one SettingsError, so `config check`
shows an operator all of them at once instead of one per run.

The file is strict (an unknown key is an error: it can only be a typo of ours), the environment is
not: an ACTIONHOOKS_* variable that names no setting is a warning (`environment_warnings`), because
the environment is shared with others. Kubernetes injects ACTIONHOOKS_PORT=tcp://…,
ACTIONHOOKS_SERVICE_HOST, ACTIONHOOKS_PORT_8080_TCP_ADDR… into every pod of a namespace that has a
Service named `actionhooks`; those must never stop the engine.

Why not pydantic-settings (its JsonConfigSettingsSource and EnvSettingsSource, tried with 2.16):
it skips a config file that does not exist (a mistyped --config would run on defaults), raises the
first json.JSONDecodeError (or a TypeError for a non-object file) on its own instead of beside the
other problems, and its errors name the field but never the source, so "(from
ACTIONHOOKS_HOOK_RETRY_TIMES)" could not be said. What it would save is the prefix and the JSON
decoding of a variable, a dozen lines. The README (Configuration reference) says the same.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from actionhooks.errors import SettingsError, SettingsProblem
from actionhooks.settings.model import Settings

ENV_PREFIX = "ACTIONHOOKS_"
CONFIG_ENV = "ACTIONHOOKS_CONFIG"
# Reserved for the test harness (e.g. ACTIONHOOKS_TEST_KAFKA, set by scripts/test): never a setting, so a
# process started by a test with the inherited environment does not fail on an "unknown setting".
TEST_ENV_PREFIX = "ACTIONHOOKS_TEST_"
DEFAULT_PATH = Path("main.json")
KNOWN_KEYS = tuple(Settings.model_fields)


def _is_text(annotation: Any) -> bool:
    if get_origin(annotation) is Literal:
        return all(isinstance(choice, str) for choice in get_args(annotation))
    return annotation is str


TEXT_KEYS = frozenset(key for key, field in Settings.model_fields.items() if _is_text(field.annotation))


def resolve_path(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The file to read and whether it was named explicitly (a missing explicit file is an error)."""
    if path is not None:
        return Path(path), True
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]), True
    return DEFAULT_PATH, False


def _suggest(key: str) -> str | None:
    matches = difflib.get_close_matches(key.upper(), KNOWN_KEYS, n=1, cutoff=0.5)
    return matches[0] if matches else None


def _read_file(path: Path, explicit: bool, problems: list[SettingsProblem]) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            problems.append(SettingsProblem("<file>", f"config file {str(path)!r} does not exist"))
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(SettingsProblem("<file>", f"cannot read {str(path)!r}: {exc}"))
        return {}
    except json.JSONDecodeError as exc:
        problems.append(SettingsProblem("<file>", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"))
        return {}
    if not isinstance(data, dict):
        problems.append(SettingsProblem("<file>", f"must be a JSON object of KEY: value, not {type(data).__name__}"))
        return {}
    return data


def _env_value(key: str, raw: str) -> Any:
    """The raw string for text keys (so API_HOST=1 or DATA_DIR=2024 stay text), else JSON when it parses
    (numbers, booleans, lists), else the plain string for validation to reject with its key."""
    if key in TEXT_KEYS:
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _setting_variables(environ: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """(variable, key, value) of each ACTIONHOOKS_* variable that may name a setting, sorted by name:
    ACTIONHOOKS_CONFIG names the file and ACTIONHOOKS_TEST_* belong to the test harness."""
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name != CONFIG_ENV and not name.startswith(TEST_ENV_PREFIX):
            yield name, name.removeprefix(ENV_PREFIX), environ[name]


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the layers; raise SettingsError listing every problem with its key."""
    environ = os.environ if environ is None else environ
    file_path, explicit = resolve_path(path, environ)
    problems: list[SettingsProblem] = []
    values = _read_file(file_path, explicit, problems)
    origin = {key: str(file_path) for key in values}
    for name, key, raw in _setting_variables(environ):
        if key in KNOWN_KEYS:  # any other is a warning, not a problem: environment_warnings()
            values[key] = _env_value(key, raw)
            origin[key] = name
    for key in list(values):
        if key not in KNOWN_KEYS:
            problems.append(SettingsProblem(key, "unknown key", _suggest(key)))
            del values[key]
    try:
        settings = Settings.model_validate(values, strict=True)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            key = str(err["loc"][0]) if err["loc"] else "<file>"
            via = f" (from {origin[key]})" if origin.get(key, str(file_path)) != str(file_path) else ""
            problems.append(SettingsProblem(key, _message(err) + via))
    else:
        if not problems:
            return settings
    raise SettingsError(_dedupe(problems), source=str(file_path))


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[SettingsProblem]:
    """ACTIONHOOKS_* variables that name no setting (ignored by load_settings), with the closest setting.

    Logged by every role at start and listed by `config check`; never fatal (see the module docstring).
    """
    environ = os.environ if environ is None else environ
    warnings = []
    for name, key, _ in _setting_variables(environ):
        if key not in KNOWN_KEYS:
            suggestion = _suggest(key)
            warnings.append(
                SettingsProblem(name, "unknown setting, ignored", ENV_PREFIX + suggestion if suggestion else None)
            )
    return warnings


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err["msg"])
    if len(err["loc"]) > 1:
        msg = f"[{']['.join(map(str, err['loc'][1:]))}] {msg}"
    return f"{msg}, got {err['input']!r}" if "input" in err and not isinstance(err["input"], dict) else msg


def _dedupe(problems: list[SettingsProblem]) -> list[SettingsProblem]:
    """A union field (number or list) reports one error per branch; keep the first per key and message."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for problem in problems:
        if (problem.key, problem.message) not in seen:
            seen.add((problem.key, problem.message))
            unique.append(problem)
    return unique
