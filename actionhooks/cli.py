"""The `actionhooks` command: process roles, config check and token creation.

Settings are loaded once here and handed down; nothing below reads the environment on its own.
`run` starts the three roles as child processes of one supervisor (the same processes a
distributed deployment starts separately), so one machine and many machines run the same code.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from actionhooks import __version__
from actionhooks.errors import SettingsError
from actionhooks.settings import Settings, environment_warnings, load_settings

ROLES = ("api", "worker", "scheduler")

log = logging.getLogger("actionhooks")


def _account_id(text: str) -> int:
    """argparse type: an account (or token) id is a positive integer (refused before anything is stored)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return int(text)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    for warning in environment_warnings():
        log.warning("environment: %s", warning)
    return settings


def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.path if args.path is not None else args.config
    try:
        settings = load_settings(path)
    except SettingsError as exc:
        print(f"config check failed: {exc}", file=sys.stderr)
        return 1
    source = path or os.environ.get("ACTIONHOOKS_CONFIG") or "main.json"
    print(f"{source}: OK")
    for warning in environment_warnings():
        print(f"  warning: {warning}")
    from actionhooks.delivery.config import MASK, redact

    for key, value in settings.model_dump().items():
        shown = MASK if key == "METRICS_TOKEN" and value else value  # URLs' passwords are redacted too
        print(f"  {key} = {redact(repr(shown))}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from actionhooks.storage.tokens import create_token

    token = create_token(_token_sessions(args), args.account, args.scope, args.name)
    print(f"Created {args.scope} token for account {args.account}. It is shown only once:")
    print(token)
    return 0


def _token_sessions(args: argparse.Namespace) -> Any:
    from actionhooks.storage.db import engine_from_settings, session_factory
    from actionhooks.storage.migrate import upgrade

    engine = engine_from_settings(_settings(args))
    upgrade(engine)
    return session_factory(engine)


def cmd_token_list(args: argparse.Namespace) -> int:
    from actionhooks.storage.tokens import list_tokens

    print("id\taccount\tscope\tcreated_at\tname")
    for info in list_tokens(_token_sessions(args), args.account):
        created = info.created_at.isoformat() if info.created_at else ""
        print(f"{info.id}\t{info.account_id}\t{info.scope}\t{created}\t{info.name}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from actionhooks.api.auth import TOKEN_CACHE_SEC
    from actionhooks.storage.tokens import revoke_token

    if revoke_token(_token_sessions(args), args.id) is None:
        print(f"no token with id {args.id}", file=sys.stderr)
        return 1
    print(f"Revoked token {args.id}; running API processes stop accepting it within {TOKEN_CACHE_SEC:g} s.")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from actionhooks.api.app import create_app
    from actionhooks.api.server import serve

    settings = _settings(args)
    # The group committer's writer thread gives up the GIL at every database call; with the default
    # 5 ms switch interval a busy event loop can make it wait up to 5 ms each time it wants it back,
    # several times per group commit. 1 ms bounds that wait while pixels pour in (bench/capture.py).
    sys.setswitchinterval(0.001)
    serve(create_app(settings), settings)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from actionhooks.broker.celery_app import make_celery
    from actionhooks.delivery import transport_class
    from actionhooks.storage.migrate import prepare_storage
    from actionhooks.worker.tasks import register_tasks

    settings = _settings(args)
    prepare_storage(settings)
    celery = make_celery(settings)
    register_tasks(celery)
    # Imported before the prefork pool forks (httpx and what it pulls in: ~0.5 s of CPU), so a child's
    # first delivery does not pay for it (bench/capture.py under py-spy: 18% of a 10 s run's worker CPU).
    transport_class("http")
    argv = [
        "worker",
        f"--pool={settings.WORKER_POOL}",
        f"--concurrency={settings.WORKER_CONCURRENCY}",
        f"--loglevel={settings.LOG_LEVEL}",
        "--without-gossip",
        "--without-mingle",
        "--prefetch-multiplier=1",
    ]
    celery.worker_main(argv)
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from actionhooks.storage.migrate import prepare_storage
    from actionhooks.worker.scheduler import run_scheduler

    settings = _settings(args)
    prepare_storage(settings)  # a scheduler started first must not tick against an empty database
    run_scheduler(settings)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Start api, worker and scheduler as children; stop all when one dies or on SIGINT/SIGTERM."""
    settings = _settings(args)  # fail fast on a bad config, before any child starts
    from actionhooks.storage.migrate import prepare_storage

    prepare_storage(settings)  # migrate once, before the roles race to do it
    base = [sys.executable, "-m", "actionhooks"] + (["--config", args.config] if args.config else [])
    children = {role: subprocess.Popen([*base, role]) for role in ROLES}
    print(
        f"actionhooks {__version__}: API on http://{settings.API_HOST}:{settings.API_PORT}, "
        f"broker {'embedded' if settings.embedded_broker else settings.BROKER_URL}, database {settings.DATABASE_URL}",
        flush=True,
    )
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = 0
    while not stopping:
        for role, proc in children.items():
            if proc.poll() is not None:
                print(f"{role} exited with {proc.returncode}; stopping the others", file=sys.stderr, flush=True)
                code = proc.returncode or 1
                stopping = True
        time.sleep(0.2)
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in children.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actionhooks", description="Action-hook delivery engine.")
    parser.add_argument("--version", action="version", version=f"actionhooks {__version__}")
    parser.add_argument("--config", help="path of main.json (default: $ACTIONHOOKS_CONFIG, else ./main.json)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("run", cmd_run, "API, delivery workers and scheduler on this machine"),
        ("api", cmd_api, "the REST API server"),
        ("worker", cmd_worker, "a delivery worker (Celery)"),
        ("scheduler", cmd_scheduler, "the scheduler: batch windows, due retries, clean-ups"),
    ):
        role = sub.add_parser(name, help=text)
        role.add_argument("--config", default=argparse.SUPPRESS, help="path of main.json")
        role.set_defaults(func=func)
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a main.json; print every problem; exit 1 on error")
    check.add_argument("path", nargs="?", help="the file (default: --config, $ACTIONHOOKS_CONFIG, ./main.json)")
    check.add_argument("--config", default=argparse.SUPPRESS, help="path of main.json (same as the positional path)")
    check.set_defaults(func=cmd_config_check)
    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token; it is printed once, alone on the last line")
    create.add_argument("--account", type=_account_id, required=True, help="account id the token belongs to")
    create.add_argument("--scope", choices=("admin", "ingest"), default="admin")
    create.add_argument("--name", default="", help="a label for the token")
    create.add_argument("--config", default=argparse.SUPPRESS, help="path of main.json")
    create.set_defaults(func=cmd_token_create)
    listing = token_sub.add_parser("list", help="list tokens (id, account, scope, name; never the token)")
    listing.add_argument("--account", type=_account_id, default=None, help="only this account's tokens")
    listing.add_argument("--config", default=argparse.SUPPRESS, help="path of main.json")
    listing.set_defaults(func=cmd_token_list)
    revoke = token_sub.add_parser("revoke", help="delete a token by its id (from `token list`)")
    revoke.add_argument("id", type=_account_id, help="the token's id")
    revoke.add_argument("--config", default=argparse.SUPPRESS, help="path of main.json")
    revoke.set_defaults(func=cmd_token_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result: int = args.func(args)
    except SettingsError as exc:
        print(f"actionhooks: {exc}", file=sys.stderr)
        return 1
    return result
