"""The `actionhooks` command line: token creation and config check, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actionhooks.storage.tokens import hash_token


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "main.json"
    if not config.exists():
        config.write_text(json.dumps({"DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "DATA_DIR": str(tmp_path)}))
    return subprocess.run(
        [sys.executable, "-m", "actionhooks", "--config", str(config), *args],
        capture_output=True,
        check=False,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_token_create_prints_the_token_alone_on_the_last_line_and_stores_only_its_hash(tmp_path: Path) -> None:
    result = _run(tmp_path, "token", "create", "--account", "23", "--scope", "ingest", "--name", "platform")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("ah_")
    assert " " not in token
    database = (tmp_path / "a.db").read_bytes()
    assert token.encode() not in database
    assert hash_token(token).encode() in database


@pytest.mark.parametrize("account", ["0", "-3", "abc"])
def test_token_create_refuses_a_bad_account_with_a_clear_message(tmp_path: Path, account: str) -> None:
    result = _run(tmp_path, "token", "create", "--account", account)
    assert result.returncode == 2
    assert "--account" in result.stderr
    assert "positive integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_reports_every_problem_with_its_key_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"HOOK_RETRY_TIMEZ": 3, "API_PORT": "80", "HOOK_RETRY_PERIOD_SEC": [5, 0]}')
    result = _run(tmp_path, "config", "check", str(bad))
    assert result.returncode == 1
    for key in ("HOOK_RETRY_TIMEZ", "HOOK_RETRY_TIMES", "API_PORT", "HOOK_RETRY_PERIOD_SEC"):
        assert key in result.stderr


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    result = _run(tmp_path, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_config_check_lists_kubernetes_service_variables_as_warnings_and_exits_0(tmp_path: Path) -> None:
    k8s = {"ACTIONHOOKS_PORT": "tcp://10.0.0.1:8080", "ACTIONHOOKS_SERVICE_HOST": "10.0.0.1",
           "ACTIONHOOKS_PORT_8080_TCP_ADDR": "10.0.0.1", "ACTIONHOOKS_API_PORT": "9191"}
    result = _run(tmp_path, "config", "check", env=k8s)
    assert result.returncode == 0, result.stderr
    assert "API_PORT = 9191" in result.stdout
    for name in ("ACTIONHOOKS_PORT", "ACTIONHOOKS_SERVICE_HOST", "ACTIONHOOKS_PORT_8080_TCP_ADDR"):
        assert f"warning: {name}: unknown setting, ignored" in result.stdout
