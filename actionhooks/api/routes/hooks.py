"""/hooks: create, list, read, replace, change, delete, activate, stop and clone (admin tokens only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request, Response

from actionhooks.api.auth import Admin
from actionhooks.hooks.models import HookOut, HookSpec
from actionhooks.hooks.service import HookService
from actionhooks.storage.hooks import SqlHookRepository

router = APIRouter(prefix="/hooks", tags=["hooks"])

HookId = Annotated[int, Path(alias="id", ge=1, le=2**63 - 1, description="the hook's id")]

_PATCH_EXAMPLES: dict[str, Any] = {
    "stop capturing clicks": {"summary": "replace one list", "value": {"actions": ["deliv", "open"]}},
    "change the URL": {
        "summary": "merge into delivery; secrets sent as *** stay as they are",
        "value": {"delivery": {"url": "https://crm.example.com/v2/hooks", "auth": {"type": "bearer", "token": "***"}}},
    },
    "drop a template": {"summary": "null removes a key", "value": {"custom_data": {"values": {"cname": None}}}},
}


def hook_service(request: Request) -> HookService:
    """The hooks service on the app's database (REST routes and console)."""
    return HookService(SqlHookRepository(request.app.state.sessions), request.app.state.settings)


Service = Annotated[HookService, Depends(hook_service)]


@router.post("", status_code=201, response_model=HookOut, summary="Create a hook")
def create_hook(spec: HookSpec, principal: Admin, service: Service) -> HookOut:
    return service.create(principal.account_id, spec).public()


@router.get("", response_model=list[HookOut], summary="List the account's hooks")
def list_hooks(principal: Admin, service: Service) -> list[HookOut]:
    return [hook.public() for hook in service.list(principal.account_id)]


@router.get("/{id}", response_model=HookOut, summary="Read a hook")
def get_hook(hook_id: HookId, principal: Admin, service: Service) -> HookOut:
    return service.get(principal.account_id, hook_id).public()


@router.put("/{id}", response_model=HookOut, summary="Replace a hook (secrets sent as *** are kept)")
def replace_hook(hook_id: HookId, spec: HookSpec, principal: Admin, service: Service) -> HookOut:
    return service.replace(principal.account_id, hook_id, spec).public()


@router.patch("/{id}", response_model=HookOut, summary="Change a hook (JSON merge patch)")
def patch_hook(
    hook_id: HookId,
    patch: Annotated[dict[str, Any], Body(openapi_examples=_PATCH_EXAMPLES)],
    principal: Admin,
    service: Service,
) -> HookOut:
    return service.patch(principal.account_id, hook_id, patch).public()


@router.delete("/{id}", status_code=204, response_class=Response, summary="Delete a hook and its queued work")
def delete_hook(hook_id: HookId, principal: Admin, service: Service) -> Response:
    service.delete(principal.account_id, hook_id)
    return Response(status_code=204)


@router.post("/{id}/activate", response_model=HookOut, summary="Start capturing events")
def activate_hook(hook_id: HookId, principal: Admin, service: Service) -> HookOut:
    return service.activate(principal.account_id, hook_id).public()


@router.post("/{id}/stop", response_model=HookOut, summary="Stop capturing events")
def stop_hook(hook_id: HookId, principal: Admin, service: Service) -> HookOut:
    return service.stop(principal.account_id, hook_id).public()


@router.post("/{id}/clone", status_code=201, response_model=HookOut, summary='Copy as "<name> (copy)", stopped')
def clone_hook(hook_id: HookId, principal: Admin, service: Service) -> HookOut:
    return service.clone(principal.account_id, hook_id).public()
