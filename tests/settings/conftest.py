"""Fixtures of the settings tests: a main.json written into a temporary folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, so the checkout's own main.json never leaks into a test."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write `values` as JSON (or `text` verbatim) to tmp_path/<name> and return its path."""

    def write(values: Any = None, *, text: str | None = None, name: str = "main.json") -> Path:
        path = tmp_path / name
        path.write_text(text if text is not None else json.dumps(values), encoding="utf-8")
        return path

    return write
