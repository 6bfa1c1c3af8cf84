"""The public surface: every module imports, every name in an `__all__` exists, heavy clients stay lazy."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import actionhooks

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(actionhooks.__path__, "actionhooks.")
    if not info.name.endswith("__main__") and ".migrations." not in info.name  # env.py runs Alembic
)


@pytest.mark.parametrize("name", ["actionhooks", *MODULES])
def test_every_name_a_module_exports_exists(name: str) -> None:
    module: ModuleType = importlib.import_module(name)

    exported = getattr(module, "__all__", [])

    assert [item for item in exported if not hasattr(module, item)] == []
    assert len(set(exported)) == len(exported)


@pytest.mark.parametrize("name", ["actionhooks", "actionhooks.cli", "actionhooks.api.app"])
def test_importing_the_package_the_cli_or_the_api_does_not_load_broker_clients(name: str) -> None:
    # Given a fresh interpreter (this one has imported everything already)
    code = f"import sys, {name}; print(sorted({{'confluent_kafka', 'pika'}} & set(sys.modules)))"

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
