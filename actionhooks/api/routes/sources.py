"""/sources: capture sources of the account (admin tokens only); secrets are write-only.

PATCH is a JSON merge patch; a secret sent back as "***" (as GET shows it) keeps the stored one.
A source's kind never changes (its URLs are already in emails and pages): create another source.
Every write drops the source from this API's capture cache, so stopping or deleting it takes effect
at once here (SOURCE_CACHE_SEC in other API processes).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actionhooks.api.auth import Admin
from actionhooks.capture.kinds import urls_of
from actionhooks.capture.links import UnsafeTarget, check_target, sign_link
from actionhooks.capture.model import MASK, Source, SourceOut, SourceSpec
from actionhooks.capture.request import MAX_PARAM_NAME, MAX_PARAM_VALUE, MAX_PARAMS
from actionhooks.errors import HookValidationError
from actionhooks.hooks.service import merge_patch
from actionhooks.storage.sources import SqlSourceRepository

router = APIRouter(prefix="/sources", tags=["sources"])

SourceId = Annotated[int, Path(alias="id", ge=1, le=2**63 - 1, description="the source's id")]
_SECRET_PATHS = (("secret",), ("auth", "password"), ("auth", "secret"))


def sources_of(request: Request) -> SqlSourceRepository:
    return SqlSourceRepository(request.app.state.sessions)


Repo = Annotated[SqlSourceRepository, Depends(sources_of)]


def source_out(request: Request, source: Source) -> SourceOut:
    """The API's view of `source`: secrets masked, its public URLs on this server."""
    root = f"{str(request.base_url).rstrip('/')}/t/{source.key}"
    return source.public(urls_of(source.spec.kind, root))


def _forget(request: Request, source: Source) -> None:
    request.app.state.capture.sources.forget(source.key)


def _validate(raw: Any, stored: Source | None) -> SourceSpec:
    """SourceSpec of `raw`, "***" secrets taken from `stored`; 422 naming each bad field."""
    if not isinstance(raw, dict):
        raise HookValidationError([(("body",), "must be a JSON object")])
    errors: list[tuple[tuple[str | int, ...], str]] = []
    old = stored.spec.model_dump(mode="json") if stored else {}
    for path in _SECRET_PATHS:
        node, old_node = raw, old
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            old_node = old_node.get(part) if isinstance(old_node, dict) else None
        if not isinstance(node, dict) or node.get(path[-1]) != MASK:
            continue
        same = isinstance(old_node, dict) and old_node.get("type") == node.get("type")
        if same and old_node.get(path[-1]) is not None:
            node[path[-1]] = old_node[path[-1]]
        else:
            errors.append((("body", *path), f'"{MASK}" keeps a stored secret, but there is none: send the secret'))
    if errors:
        raise HookValidationError(errors)
    try:
        spec = SourceSpec.model_validate(raw)
    except ValidationError as exc:
        raise HookValidationError([_problem(err) for err in exc.errors()]) from None
    if stored is not None and spec.kind != stored.spec.kind:
        raise HookValidationError([(("body", "kind"), "a source's kind cannot change; create a new source")])
    return spec


def _problem(err: Any) -> tuple[tuple[str | int, ...], str]:
    """pydantic's error as (loc, msg); a model-level rule names its field first ("event_types: ...")."""
    loc, msg = tuple(err["loc"]), str(err["msg"]).removeprefix("Value error, ")
    if not loc and ": " in msg:
        field, msg = msg.split(": ", 1)
        loc = (field,)
    return ("body", *loc), msg


# The functions below are what each route does; the console's Sources page calls them too (one code path).
def create(request: Request, account_id: int, body: Any) -> Source:
    """A new source of `account_id` from a POST body; HookValidationError naming each bad field."""
    return sources_of(request).add(account_id, _validate(body, None))


def change(request: Request, account_id: int, source_id: int, patch: Any) -> Source:
    """Apply a JSON merge patch (secrets sent as "***" are kept) and drop the source from the capture cache."""
    repo = sources_of(request)
    stored = repo.get(account_id, source_id)
    public = stored.public({}).model_dump(mode="json")
    current = {name: public[name] for name in SourceSpec.model_fields}
    source = repo.replace(account_id, source_id, _validate(merge_patch(current, patch), stored))
    _forget(request, source)
    return source


def remove(request: Request, account_id: int, source_id: int) -> None:
    key = sources_of(request).delete(account_id, source_id)
    request.app.state.capture.sources.forget(key)


def signed_link(request: Request, source: Source, to: str, params: dict[str, str | int]) -> str:
    """A redirect link of `source` to `to` carrying `params`, signed with the source's secret."""
    if source.spec.kind != "redirect":
        msg = f"links are signed by redirect sources; this one is {source.spec.kind}"
        raise HookValidationError([(("path", "id"), msg)])
    try:
        check_target(to)
    except UnsafeTarget as exc:
        raise HookValidationError([(("body", "to"), str(exc))]) from None
    if {"to", "sig"} & set(params):
        raise HookValidationError([(("body", "params"), "'to' and 'sig' are set by the link itself")])
    items = [("to", to), *((name, str(value)) for name, value in params.items())]
    items.append(("sig", sign_link(source.spec.secret or "", items)))
    return f"{source_out(request, source).urls['redirect']}?{urlencode(items)}"


@router.post("", status_code=201, response_model=SourceOut, summary="Create a capture source")
def create_source(request: Request, body: Annotated[dict[str, Any], Body()], principal: Admin) -> SourceOut:
    return source_out(request, create(request, principal.account_id, body))


@router.get("", response_model=list[SourceOut], summary="List the account's capture sources")
def list_sources(request: Request, principal: Admin, repo: Repo) -> list[SourceOut]:
    return [source_out(request, source) for source in repo.list(principal.account_id)]


@router.get("/{id}", response_model=SourceOut, summary="Read a capture source")
def get_source(request: Request, source_id: SourceId, principal: Admin, repo: Repo) -> SourceOut:
    return source_out(request, repo.get(principal.account_id, source_id))


@router.patch("/{id}", response_model=SourceOut, summary="Change a capture source (JSON merge patch)")
def patch_source(request: Request, source_id: SourceId, patch: Annotated[dict[str, Any], Body()],
                 principal: Admin) -> SourceOut:
    return source_out(request, change(request, principal.account_id, source_id, patch))


@router.delete("/{id}", status_code=204, response_class=Response, summary="Delete a capture source")
def delete_source(request: Request, source_id: SourceId, principal: Admin) -> Response:
    remove(request, principal.account_id, source_id)
    return Response(status_code=204)


Param = Annotated[str, Field(max_length=MAX_PARAM_VALUE)] | int


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Annotated[str, Field(min_length=1, max_length=2048)]
    params: Annotated[dict[Annotated[str, Field(min_length=1, max_length=MAX_PARAM_NAME)], Param],
                      Field(max_length=MAX_PARAMS)] = Field(default_factory=dict)


class Link(BaseModel):
    url: str


@router.post("/{id}/links", status_code=201, response_model=Link, summary="A signed redirect link")
def create_link(request: Request, source_id: SourceId, body: LinkRequest, principal: Admin, repo: Repo) -> Link:
    return Link(url=signed_link(request, repo.get(principal.account_id, source_id), body.to, body.params))
