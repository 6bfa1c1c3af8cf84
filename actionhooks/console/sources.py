"""The console's Sources pages: capture sources, their snippets and their last captured events.

Every action calls what its REST route calls (api/routes/sources.py): `create`, `change` (Save,
Activate and Stop are merge patches, as PATCH /sources/{id}), `remove` and `signed_link` (POST
/sources/{id}/links). Validation is SourceSpec's, so errors are the API's, shown by their field.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from actionhooks.api.routes import sources as api
from actionhooks.capture.model import Source
from actionhooks.console import source_forms as forms
from actionhooks.console.routes import ConsoleRoute, RowId, base_context, editor_post, page, signed_post, when
from actionhooks.console.session import COOKIE, principal_of
from actionhooks.console.snippets import snippets_of
from actionhooks.errors import HookValidationError, NotFound
from actionhooks.events import EVENT_TYPES

__all__ = ["router"]

router = APIRouter(prefix="/console/sources", route_class=ConsoleRoute, include_in_schema=False)
ACTIONS = {"activate": {"active": True}, "stop": {"active": False}, "delete": None}
CONFIRM = {"delete": "Delete source “{name}”? Its URLs stop capturing at once.",
           "stop": "Stop source “{name}”? It captures nothing until activated."}
DONE = {"activate": "Activated “{name}”.", "stop": "Stopped “{name}”.", "delete": "Deleted source “{name}”."}


@router.get("", response_class=HTMLResponse)
def sources_page(request: Request) -> Response:
    principal, token = principal_of(request)
    rows = [api.source_out(request, s) for s in api.sources_of(request).list(principal.account_id)]
    context = {**base_context(principal.account_id, token, "Sources"), "rows": rows,
               "notice": request.query_params.get("notice"), "confirm": CONFIRM, "kinds": forms.KINDS}
    return page(request, "sources.html", context)


@router.get("/new", response_class=HTMLResponse)
def new_source_page(request: Request) -> Response:
    principal, token = principal_of(request)
    return _editor(request, principal.account_id, token, None, forms.form_of(None), errors={})


@router.get("/{source_id}", response_class=HTMLResponse)
def edit_source_page(request: Request, source_id: RowId) -> Response:
    principal, token = principal_of(request)
    source = api.sources_of(request).get(principal.account_id, source_id)
    notice = request.query_params.get("notice")
    return _editor(request, principal.account_id, token, source, forms.form_of(source), errors={}, notice=notice)


@router.get("/{source_id}/captures", response_class=HTMLResponse)
def captures_fragment(request: Request, source_id: RowId) -> Response:
    """The "Last captured events" section alone: the source's page polls it."""
    principal, _ = principal_of(request)
    repo = api.sources_of(request)
    source = repo.get(principal.account_id, source_id)
    context = {"source": source, "captures": repo.captures(principal.account_id, source_id), "when": when}
    return page(request, "_captures.html", context)


@router.post("/new", response_class=HTMLResponse)
async def create_source(request: Request) -> Response:
    return await _save(request, None)


@router.post("/{source_id}", response_class=HTMLResponse)
async def save_source(request: Request, source_id: RowId) -> Response:
    return await _save(request, source_id)


async def _save(request: Request, source_id: int | None) -> Response:
    account_id, stored, form = await editor_post(request, api.sources_of(request).get, source_id, forms.form_values)
    body = forms.body_of(form, stored=stored)
    try:
        if stored is None:
            saved = await run_in_threadpool(api.create, request, account_id, body)
        else:
            saved = await run_in_threadpool(api.change, request, account_id, stored.id, body)
    except HookValidationError as exc:
        errors: dict[str, list[str]] = {}
        for loc, msg in exc.errors:
            errors.setdefault(forms.error_field(loc), []).append(msg)
        token = request.cookies[COOKIE]
        return _editor(request, account_id, token, stored, form, errors=errors, status=422)
    notice = "Saved." if stored else "Created. Copy a snippet below to start capturing."
    return RedirectResponse(f"/console/sources/{saved.id}?{urlencode({'notice': notice})}", status_code=303)


@router.post("/{source_id}/link", response_class=HTMLResponse)
async def create_link(request: Request, source_id: RowId) -> Response:
    """A signed redirect link, through the code of POST /sources/{id}/links."""
    account_id, pairs = await signed_post(request)
    source = await run_in_threadpool(api.sources_of(request).get, account_id, source_id)
    fields = dict(pairs)
    to = fields.get("to", "").strip()
    link = {"to": to, "params": fields.get("params", ""), "url": None, "error": None}
    params: dict[str, str | int] = {}
    for line in fields.get("params", "").splitlines():
        name, _, value = line.strip().partition("=")
        if name.strip():
            params[name.strip()] = value.strip()
    try:
        request_ = api.LinkRequest.model_validate({"to": to, "params": params})
        link["url"] = api.signed_link(request, source, request_.to, request_.params)
    except HookValidationError as exc:
        link["error"] = "; ".join(msg for _, msg in exc.errors)
    except ValidationError as exc:  # LinkRequest's bounds: the target's length, the parameters' count and sizes
        link["error"] = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    token = request.cookies[COOKIE]
    return _editor(request, account_id, token, source, forms.form_of(source), errors={}, link=link,
                   status=422 if link["error"] else 200)


@router.post("/{source_id}/{action}")
async def source_action(request: Request, source_id: RowId, action: str) -> Response:
    if action not in ACTIONS:
        raise NotFound("source", source_id)
    account_id, form = await signed_post(request)
    source = await run_in_threadpool(api.sources_of(request).get, account_id, source_id)
    name = source.spec.name
    if action in CONFIRM and dict(form).get("confirmed") != "yes":
        context = {**base_context(account_id, request.cookies[COOKIE], "Sources"), "action": action,
                   "question": CONFIRM[action].format(name=name),
                   "action_url": f"/console/sources/{source_id}/{action}", "cancel_url": "/console/sources"}
        return page(request, "confirm.html", context)
    patch = ACTIONS[action]
    if patch is None:
        await run_in_threadpool(api.remove, request, account_id, source_id)
    else:
        await run_in_threadpool(api.change, request, account_id, source_id, patch)
    notice = DONE[action].format(name=name)
    return RedirectResponse(f"/console/sources?{urlencode({'notice': notice})}", status_code=303)


def _editor(request: Request, account_id: int, token: str, source: Source | None, form: dict[str, Any], *,
            errors: dict[str, list[str]], status: int = 200, notice: str | None = None,
            link: dict[str, Any] | None = None) -> Response:
    out = api.source_out(request, source) if source else None
    context = {
        **base_context(account_id, token, "Sources"),
        "source": out,
        "form": form,
        "errors": errors,
        "notice": notice,
        "kinds": forms.KINDS,
        "auth_types": forms.AUTH_TYPES,
        "default_types": forms.default_types_hint(),
        "event_types": list(EVENT_TYPES),
        "snippets": snippets_of(out) if out else [],
        "captures": api.sources_of(request).captures(account_id, source.id) if source else [],
        "link": link or {"to": "", "params": "", "url": None, "error": None},
        "when": when,
        "confirm": CONFIRM,
    }
    return page(request, "source.html", context, status=status)
