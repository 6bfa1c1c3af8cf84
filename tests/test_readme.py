"""The README is part of the product: its quick start and configuration reference must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from actionhooks.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_main_json_key_is_in_the_configuration_reference() -> None:
    section = README.split("## Configuration reference (main.json)")[1].split("\n## ")[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    assert set(Settings.model_fields) - documented == set()


def test_the_quick_start_is_exactly_two_commands_and_ci_runs_the_second() -> None:
    quick = README.split("## Quick start")[1].split("\n## ")[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, flags=re.S)
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert commands[1].strip() in ci
