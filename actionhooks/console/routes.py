"""The console's pages and actions under /console/, on the same functions as the REST API.

Every action calls what its REST route calls: the hooks service (hook_service) for create, replace,
activate, stop, clone and delete; send_test_attempt for Send test; attempts_of, failed_of and
replay_batches for the delivery pages. Pages are plain HTML forms that work without JavaScript;
htmx (shipped in static/) turns the preview, Send test and the replay progress into partial updates.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from actionhooks.api.routes.deliveries import attempts_of, failed_of, replay_batches, send_test_attempt
from actionhooks.api.routes.hooks import hook_service
from actionhooks.console import forms
from actionhooks.console.chart import chart
from actionhooks.console.preview import render_preview
from actionhooks.console.session import (
    COOKIE,
    COOKIE_PATH,
    SESSION_MAX_AGE_SEC,
    CsrfRejected,
    LoginRequired,
    check_post,
    csrf_token,
    principal_of,
    read_form,
    same_origin,
)
from actionhooks.errors import HookValidationError, NotFound
from actionhooks.events import EVENT_TYPES
from actionhooks.hooks.models import FILTER_KINDS, Hook
from actionhooks.hooks.service import parse_spec
from actionhooks.storage.activity import HookFigures, activity, hook_figures
from actionhooks.storage.console_sessions import close_session, open_session

__all__ = ["NAVIGATION", "ConsoleRoute", "base_context", "editor_post", "page", "router", "signed_post", "when"]

HERE = FilePath(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# The console's sections, in menu order: (label, path).
NAVIGATION: list[tuple[str, str]] = [("Hooks", "/console/hooks"), ("Sources", "/console/sources")]
ATTEMPTS_SHOWN = 200
FAILED_SHOWN = 500
HOOK_ACTIONS = ("activate", "stop", "clone", "delete")
# A hook's or a source's id in a console path: a positive 64-bit integer, else 422 before any look-up.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CONFIRM = {"delete": "Delete hook “{name}” and its queued and failed batches?", "stop": "Stop hook “{name}”?"}


class ConsoleRoute(APIRoute):
    """Turns the console's exceptions into pages: login, 403 for a refused POST, 404 for another account's hook."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"HX-Redirect": "/console/login"})
                return RedirectResponse("/console/login", status_code=303)
            except CsrfRejected:
                request.app.state.console_refused.labels("csrf").inc()
                return page(request, "error.html", {"title": "Request refused", "message": _REFUSED}, status=403)
            except NotFound as exc:
                request.app.state.console_refused.labels("not_found").inc()
                message = f"There is no such {exc.kind} in this account."
                return page(request, "error.html", {"title": "Not found", "message": message}, status=404)

        return handle


_REFUSED = "This request did not come from a console page of this session, so nothing was changed."

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"navigation": NAVIGATION, **context}, status_code=status)


async def _signed_in(request: Request) -> tuple[int, str]:
    principal, token = await run_in_threadpool(principal_of, request)
    return principal.account_id, token


async def signed_post(request: Request) -> tuple[int, list[tuple[str, str]]]:
    """The account of a state-changing request whose CSRF token and origin check out, and its form."""
    account_id, token = await _signed_in(request)
    form = await read_form(request)
    check_post(request, form, token)
    return account_id, form


Stored = TypeVar("Stored")


async def editor_post(
    request: Request, get: Callable[[int, int], Stored], item_id: int | None,
    form_values: Callable[[Sequence[tuple[str, str]]], dict[str, Any]],
) -> tuple[int, Stored | None, dict[str, Any]]:
    """An editor's signed POST: its account, the stored hook or source it changes (None when it creates
    one, or `get`'s NotFound for another account's) and its form."""
    account_id, pairs = await signed_post(request)
    stored = await run_in_threadpool(get, account_id, item_id) if item_id is not None else None
    return account_id, stored, form_values(pairs)


def base_context(account_id: int, token: str, active: str = "Hooks") -> dict[str, Any]:
    return {"account_id": account_id, "csrf": csrf_token(token), "active_nav": active}


# --- sign in -----------------------------------------------------------------------------------
@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/console/hooks", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    try:
        principal_of(request)
    except LoginRequired:
        return page(request, "login.html", {"error": None})
    return RedirectResponse("/console/hooks", status_code=303)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    if not same_origin(request):
        raise CsrfRejected
    form = dict(await read_form(request))
    token = form.get("token", "").strip()
    scope, secret = None, None
    if 0 < len(token) <= 200:
        scope, secret = await run_in_threadpool(open_session, request.app.state.sessions, token, SESSION_MAX_AGE_SEC)
    if secret is None:
        request.app.state.console_refused.labels("login").inc()
        error = "This token is not an admin token of any account." if scope is None else (
            "This is an ingest token: the console needs an admin token."
        )
        return page(request, "login.html", {"error": error}, status=401)
    response = RedirectResponse("/console/hooks", status_code=303)
    response.set_cookie(
        COOKIE, secret, max_age=SESSION_MAX_AGE_SEC, path=COOKIE_PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await signed_post(request)
    await run_in_threadpool(close_session, request.app.state.sessions, request.cookies[COOKIE])
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


# --- hooks list ----------------------------------------------------------------------------------
@router.get("/hooks", response_class=HTMLResponse)
def hooks_page(request: Request) -> Response:
    principal, token = principal_of(request)
    account_id = principal.account_id
    hooks = hook_service(request).list(account_id)
    with request.app.state.sessions() as session:
        figures = hook_figures(session, account_id)
        picture = chart(activity(session, account_id))
    rows = [(hook, figures.get(hook.id, HookFigures())) for hook in hooks]
    notice = request.query_params.get("notice")
    return page(
        request,
        "hooks.html",
        {**base_context(account_id, token), "rows": rows, "chart": picture, "notice": notice, "target": _target,
         "when": when, "confirm": _confirm},
    )


# --- editor ---------------------------------------------------------------------------------------
@router.get("/hooks/new", response_class=HTMLResponse)
def new_hook_page(request: Request) -> Response:
    principal, token = principal_of(request)
    return _editor(request, principal.account_id, token, None, forms.hook_to_form(None), errors={})


@router.get("/hooks/{hook_id}", response_class=HTMLResponse)
def edit_hook_page(request: Request, hook_id: RowId) -> Response:
    principal, token = principal_of(request)
    hook = hook_service(request).get(principal.account_id, hook_id)
    notice = "Saved." if request.query_params.get("saved") else None
    return _editor(request, principal.account_id, token, hook, forms.hook_to_form(hook.spec), errors={}, notice=notice)


@router.post("/hooks/new", response_class=HTMLResponse)
async def create_hook(request: Request) -> Response:
    return await _save(request, None)


@router.post("/hooks/{hook_id}", response_class=HTMLResponse)
async def save_hook(request: Request, hook_id: RowId) -> Response:
    return await _save(request, hook_id)


async def _save(request: Request, hook_id: RowId | None) -> Response:
    service = hook_service(request)
    account_id, stored, form = await editor_post(request, service.get, hook_id, forms.form_values)
    token = request.cookies[COOKIE]
    if form.get("op") == "add_value":  # "Add value" without JavaScript: the same form with one more pair
        form["values"].append(("", ""))
        return _editor(request, account_id, token, stored, form, errors={})
    errors: dict[str, list[str]] = {}
    try:
        body = forms.form_to_body(form, stored=stored.spec if stored else None)
        spec = parse_spec(body)
        if stored is None:
            saved = await run_in_threadpool(service.create, account_id, spec)
        else:
            saved = await run_in_threadpool(service.replace, account_id, stored.id, spec)
    except forms.FormProblems as exc:
        errors = {name: [msg] for name, msg in exc.problems.items()}
    except HookValidationError as exc:
        kind = str(form.get("delivery_type", ""))
        for loc, msg in exc.errors:
            errors.setdefault(forms.error_field(loc, kind), []).append(msg)
    if errors:
        return _editor(request, account_id, token, stored, form, errors=errors, status=422)
    return RedirectResponse(f"/console/hooks/{saved.id}?saved=1", status_code=303)


def _editor(
    request: Request, account_id: int, token: str, hook: Hook | None, form: dict[str, Any],
    *, errors: dict[str, list[str]], status: int = 200, notice: str | None = None, test: Any = None,
) -> Response:
    actions = form.get("actions") or []
    sample = actions[0] if actions else "deliv"
    preview = _preview_of(request, account_id, form, sample)
    context = {
        **base_context(account_id, token),
        "hook": hook,
        "form": form,
        "errors": errors,
        "notice": notice,
        "groups": forms.ACTION_GROUPS,
        "filter_kinds": FILTER_KINDS,
        "delivery_types": forms.DELIVERY_LABELS,
        "fields": forms.FIELDS,
        "event_types": list(EVENT_TYPES),
        "sample": sample,
        "preview": preview,
        "test": test,
    }
    return page(request, "editor.html", context, status=status)


def _preview_of(request: Request, account_id: int, form: dict[str, Any], action: str) -> Any:
    values: dict[str, str] = {}
    for key, value in form.get("values", []):
        if key.strip() or value:
            values[key.strip()] = value
    database = str(form.get("database_id", "")).strip()
    profile_fields = [p.strip() for p in str(form.get("profile_fields", "")).split(",") if p.strip()]
    return render_preview(
        request.app.state.settings, account_id, action=action,
        database_id=int(database) if database.isdecimal() else None, profile_fields=profile_fields, values=values,
    )


@router.post("/preview", response_class=HTMLResponse)
async def preview(request: Request) -> Response:
    account_id, pairs = await signed_post(request)
    form = forms.form_values(pairs)
    action = str(form.get("sample_action") or "deliv")
    result = await run_in_threadpool(_preview_of, request, account_id, form, action)
    return page(request, "_preview.html", {"preview": result})


@router.post("/hooks/{hook_id}/test", response_class=HTMLResponse)
async def send_test(request: Request, hook_id: RowId) -> Response:
    account_id, _ = await signed_post(request)
    result = await run_in_threadpool(send_test_attempt, request, account_id, hook_id, None)
    payload = orjson.dumps(result.payload, option=orjson.OPT_INDENT_2).decode()
    test = {"result": result, "payload": payload}
    if request.headers.get("hx-request"):
        return page(request, "_test_result.html", {"test": test})
    hook = await run_in_threadpool(hook_service(request).get, account_id, hook_id)
    token = request.cookies[COOKIE]
    return _editor(request, account_id, token, hook, forms.hook_to_form(hook.spec), errors={}, test=test)


# --- attempts and failed ---------------------------------------------------------------------------
@router.get("/hooks/{hook_id}/attempts", response_class=HTMLResponse)
def attempts_page(request: Request, hook_id: RowId) -> Response:
    account_id, context = _hook_rows_context(request, hook_id, attempts_of, ATTEMPTS_SHOWN)
    with request.app.state.sessions() as session:
        context["chart"] = chart(activity(session, account_id, hook_id))
    return page(request, "attempts.html", context)


@router.get("/hooks/{hook_id}/failed", response_class=HTMLResponse)
def failed_page(request: Request, hook_id: RowId) -> Response:
    account_id, context = _hook_rows_context(request, hook_id, failed_of, FAILED_SHOWN)
    with request.app.state.sessions() as session:
        context["figures"] = hook_figures(session, account_id, hook_id).get(hook_id, HookFigures())
    replayed = request.query_params.get("replayed")
    context["replayed"] = int(replayed) if replayed and replayed.isdecimal() else None
    name = "_failed_list.html" if request.headers.get("hx-request") else "failed.html"
    return page(request, name, context)


def _hook_rows_context(
    request: Request, hook_id: int, rows_of: Callable[[Request, int, int, int], Any], shown: int,
) -> tuple[int, dict[str, Any]]:
    """The account and the context of a page of one hook's rows (attempts, failed batches): the hook
    (NotFound for another account's) and its latest `shown` rows."""
    principal, token = principal_of(request)
    hook = hook_service(request).get(principal.account_id, hook_id)
    rows = rows_of(request, principal.account_id, hook_id, shown)
    return principal.account_id, {**base_context(principal.account_id, token), "hook": hook, "rows": rows, "when": when}


@router.post("/hooks/{hook_id}/failed/replay")
async def replay(request: Request, hook_id: RowId) -> Response:
    account_id, form = await signed_post(request)
    everything = any(k == "scope" and v == "all" for k, v in form)
    ids = None if everything else [v for k, v in form if k == "batch"][:10_000]
    count = await replay_batches(request, account_id, hook_id, ids)
    return RedirectResponse(f"/console/hooks/{hook_id}/failed?replayed={count}", status_code=303)


# Last: "/hooks/{id}/{action}" would otherwise take "/hooks/{id}/test".
@router.post("/hooks/{hook_id}/{action}")
async def hook_action(request: Request, hook_id: RowId, action: str) -> Response:
    if action not in HOOK_ACTIONS:
        raise NotFound("hook", hook_id)
    account_id, form = await signed_post(request)
    service = hook_service(request)
    fields = dict(form)
    if action in CONFIRM and fields.get("confirmed") != "yes":
        hook = await run_in_threadpool(service.get, account_id, hook_id)
        context = {**base_context(account_id, request.cookies[COOKIE]), "hook": hook, "action": action,
                   "question": _confirm(action, hook)}
        return page(request, "confirm.html", context)
    done = await run_in_threadpool(getattr(service, action), account_id, hook_id)
    name = done.spec.name if isinstance(done, Hook) else f"#{hook_id}"
    notice = {"activate": f"Activated “{name}”.", "stop": f"Stopped “{name}”.", "clone": f"Created “{name}”.",
              "delete": f"Deleted hook #{hook_id}."}[action]
    return RedirectResponse(f"/console/hooks?{urlencode({'notice': notice})}", status_code=303)


# --- helpers for templates --------------------------------------------------------------------------
def _target(hook: Hook) -> str:
    d = hook.spec.delivery.model_dump(mode="json")
    kind = d["type"]
    if kind == "http":
        return f"{d['method']} {d['url']}"
    if kind == "kafka":
        return f"{d['bootstrap_servers']} → {d['topic']}"
    where = d.get("queue") or "queue per event type" if kind == "rabbitmq_queue" else d.get("exchange")
    return f"{d['host']}:{d['port']}{d['vhost'] if d['vhost'] != '/' else ''} → {where}"


def when(moment: float | str | None, *, utc: bool = True) -> str:
    if moment is None:
        return "never"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S" + (" UTC" if utc else ""))


def _confirm(action: str, hook: Hook) -> str:
    return CONFIRM.get(action, "").format(name=hook.spec.name)
