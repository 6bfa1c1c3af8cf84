"""The built wheel, installed in a clean venv, works without the checkout.

A flat layout lets tests pass against the source tree while the wheel lacks files (package data such
as the Alembic migrations, a module missing from the package list, a dependency missing from
pyproject.toml). So: build the wheel from the files a clone would have, install it with its declared
dependencies into a new venv (from the configured package index, through pip's shared cache: about
15 s here), and run the installed `actionhooks` from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "actionhooks" / "storage" / "migrations"

pytestmark = pytest.mark.slow


def _run(args: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _checked(args: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = _run(args, cwd, env)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"


def _clone_files(destination: Path) -> None:
    """Copy what a clone of the checkout holds (tracked and new, unignored files), nothing built or cached."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not part of it
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


@dataclass(frozen=True)
class InstalledWheel:
    venv: Path
    workdir: Path  # outside the checkout, so the checkout's package cannot be imported by accident
    env: dict[str, str]

    def run(self, *args: str | Path):
        return _run(args, self.workdir, self.env, timeout=120)

    def python(self, code: str):
        return self.run(self.venv / "bin" / "python", "-c", code)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    base = tmp_path_factory.mktemp("packaging")
    source, dist, venv, workdir = (base / name for name in ("source", "dist", "venv", "work"))
    _clone_files(source)
    _checked([sys.executable, "-m", "build", "--wheel", "--outdir", dist, source], base)
    [wheel] = dist.glob("actionhooks-*.whl")
    # A venv of the base interpreter, without ensurepip (2-3 s); our venv's pip installs into it.
    _checked([sys.executable, "-m", "venv", "--without-pip", venv], base)
    # Nothing of the caller's environment may point at a checkout: with PYTHONPATH on one holding an
    # editable install's egg-info, pip finds "actionhooks" already installed and skips the wheel.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ACTIONHOOKS_", "PYTHON", "VIRTUAL_ENV"))
    }
    _checked([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", wheel], base, env)
    workdir.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return InstalledWheel(venv, workdir, env)


def test_the_installed_package_is_imported_from_the_new_venv_not_the_checkout(
    installed_wheel: InstalledWheel,
) -> None:
    done = installed_wheel.python("import actionhooks; print(actionhooks.__file__)")

    assert done.returncode == 0, done.stderr
    location = Path(done.stdout.strip())
    assert location.is_relative_to(installed_wheel.venv)
    assert not location.is_relative_to(ROOT)


def test_config_check_from_the_wheel_accepts_the_root_main_json(installed_wheel: InstalledWheel) -> None:
    done = installed_wheel.run("actionhooks", "config", "check", ROOT / "main.json")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


def test_config_check_from_the_wheel_names_each_bad_key_and_exits_1(installed_wheel: InstalledWheel) -> None:
    bad = installed_wheel.workdir / "bad.json"
    bad.write_text(json.dumps({"HOOK_RETRY_TIME": 4, "API_PORT": "8080"}), encoding="utf-8")

    done = installed_wheel.run("actionhooks", "config", "check", bad)

    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "HOOK_RETRY_TIME" in output
    assert "did you mean 'HOOK_RETRY_TIMES'?" in output
    assert "API_PORT" in output


def test_python_dash_m_actionhooks_runs_from_the_wheel(installed_wheel: InstalledWheel) -> None:
    done = installed_wheel.run(installed_wheel.venv / "bin" / "python", "-m", "actionhooks", "--version")

    assert done.returncode == 0, done.stderr
    assert "actionhooks" in done.stdout


def test_every_migration_of_the_checkout_is_in_the_wheel(installed_wheel: InstalledWheel) -> None:
    done = installed_wheel.python(
        "import json; from actionhooks.storage.migrate import MIGRATIONS;"
        "print(json.dumps(sorted(str(p.relative_to(MIGRATIONS)) for p in MIGRATIONS.rglob('*') if p.is_file()"
        " and '__pycache__' not in p.parts)))"
    )

    assert done.returncode == 0, done.stderr
    shipped = set(json.loads(done.stdout))
    expected = {
        str(path.relative_to(MIGRATIONS))
        for path in MIGRATIONS.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - shipped == set()


def test_every_console_template_and_static_file_is_in_the_wheel(installed_wheel: InstalledWheel) -> None:
    console = ROOT / "actionhooks" / "console"
    done = installed_wheel.python(
        "import json; from actionhooks.console.routes import HERE;"
        "print(json.dumps(sorted(str(p.relative_to(HERE)) for d in ('templates', 'static')"
        " for p in (HERE / d).iterdir() if p.is_file())))"
    )

    assert done.returncode == 0, done.stderr
    expected = {str(p.relative_to(console)) for d in ("templates", "static") for p in (console / d).iterdir()}
    assert expected - set(json.loads(done.stdout)) == set()


def test_the_wheels_migrations_build_the_schema_on_an_empty_database(installed_wheel: InstalledWheel) -> None:
    done = installed_wheel.python(
        "import json; from sqlalchemy import create_engine, inspect;"
        "from actionhooks.storage.migrate import upgrade; from actionhooks.storage.tables import Base;"
        "engine = create_engine('sqlite:///empty.db'); upgrade(engine);"
        "print(json.dumps([sorted(Base.metadata.tables), sorted(inspect(engine).get_table_names())]))"
    )

    assert done.returncode == 0, done.stderr
    declared, created = json.loads(done.stdout)
    assert declared
    assert set(declared) <= set(created)


def test_the_site_script_is_in_the_wheel(installed_wheel: InstalledWheel) -> None:
    done = installed_wheel.python("from actionhooks.capture.kinds.site import SCRIPT; print(len(SCRIPT))")

    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == (ROOT / "actionhooks" / "capture" / "static" / "s.js").stat().st_size
