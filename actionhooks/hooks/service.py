"""Hook rules over a repository: what create, replace, patch, clone, activate, stop and delete mean.

Every save goes through `_prepare`, which (1) validates the whole hook with HookSpec, (2) puts back
the stored secret wherever a client sent "***" (secrets are write-only, so a client that echoes a
hook it read must not wipe them), and (3) compiles the custom_data templates, so a hook that saves is a
hook the worker can run. Any problem raises HookValidationError with locations under "body", before
the repository writes anything.

PATCH is a JSON merge patch (RFC 7396) over the stored hook: objects merge key by key, `null` removes
a key (its default applies), anything else replaces. When a patch changes `delivery.type` (or
`delivery.auth.type`) that object is replaced, not merged, since fields of the old type mean nothing
to the new one.

Clone copies the whole configuration, secrets and signing secret included: the user cannot read the
secrets back to re-enter them, so a clone that dropped them would not work, and a receiver that
verifies the original's signatures verifies the clone's too. The copy is stopped, named
"<name> (copy)".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, TypeAdapter, ValidationError

from actionhooks.delivery.config import MASK, DeliveryConfig
from actionhooks.errors import HookValidationError, TemplateSyntaxError
from actionhooks.hooks.models import NAME_MAX_LENGTH, Hook, HookSpec, masked_delivery, secret_paths
from actionhooks.settings import Settings
from actionhooks.templating import compile_values

__all__ = ["HookRepository", "HookService", "merge_patch", "parse_spec"]

_DELIVERY: TypeAdapter[Any] = TypeAdapter(DeliveryConfig)
_COPY_SUFFIX = " (copy)"


class HookRepository(Protocol):
    """Storage of hooks, scoped by account; every write also records a hook change for workers."""

    def add(self, account_id: int, spec: HookSpec) -> Hook: ...

    def get(self, account_id: int, hook_id: int) -> Hook: ...

    def list(self, account_id: int) -> list[Hook]: ...

    def update(self, account_id: int, hook_id: int, change: Callable[[Hook], HookSpec]) -> Hook:
        """Apply `change` to the stored hook in one transaction (NotFound, or whatever `change` raises)."""
        ...

    def delete(self, account_id: int, hook_id: int) -> None: ...


class HookService:
    """Hook rules; `settings` bound the custom_data templates exactly as the worker will render them."""

    def __init__(self, repository: HookRepository, settings: Settings) -> None:
        self._repo = repository
        self._limits = {
            "max_output_chars": settings.TEMPLATE_MAX_OUTPUT_CHARS,
            "max_render_ms": settings.TEMPLATE_MAX_RENDER_MS,
        }

    def create(self, account_id: int, spec: HookSpec) -> Hook:
        return self._repo.add(account_id, self._prepare(spec.model_dump(mode="json"), None))

    def get(self, account_id: int, hook_id: int) -> Hook:
        return self._repo.get(account_id, hook_id)

    def list(self, account_id: int) -> list[Hook]:
        return self._repo.list(account_id)

    def replace(self, account_id: int, hook_id: int, spec: HookSpec) -> Hook:
        raw = spec.model_dump(mode="json")
        return self._repo.update(account_id, hook_id, lambda old: self._prepare(raw, old.spec))

    def patch(self, account_id: int, hook_id: int, patch: dict[str, Any]) -> Hook:
        def change(old: Hook) -> HookSpec:
            shown = {**old.spec.model_dump(mode="json"), "delivery": masked_delivery(old.spec.delivery)}
            return self._prepare(merge_patch(shown, patch), old.spec)

        return self._repo.update(account_id, hook_id, change)

    def clone(self, account_id: int, hook_id: int) -> Hook:
        old = self._repo.get(account_id, hook_id)
        name = old.spec.name[: NAME_MAX_LENGTH - len(_COPY_SUFFIX)] + _COPY_SUFFIX
        return self._repo.add(account_id, old.spec.model_copy(update={"name": name, "active": False}))

    def activate(self, account_id: int, hook_id: int) -> Hook:
        return self._set_active(account_id, hook_id, True)

    def stop(self, account_id: int, hook_id: int) -> Hook:
        return self._set_active(account_id, hook_id, False)

    def _set_active(self, account_id: int, hook_id: int, active: bool) -> Hook:
        return self._repo.update(account_id, hook_id, lambda old: old.spec.model_copy(update={"active": active}))

    def delete(self, account_id: int, hook_id: int) -> None:
        self._repo.delete(account_id, hook_id)

    def _prepare(self, raw: dict[str, Any], stored: HookSpec | None) -> HookSpec:
        spec = parse_spec(raw)
        delivery = _restore_secrets(spec.delivery, stored.delivery if stored else None)
        spec = spec.model_copy(update={"delivery": _DELIVERY.validate_python(delivery)})
        self._compile(spec.custom_data.values, ("body", "custom_data", "values"), by_key=True)
        for name in spec.delivery.TEMPLATE_FIELDS:  # Kafka key, stream/subject/topic names, S3 prefix...
            self._compile({name: getattr(spec.delivery, name)}, ("body", "delivery", name), by_key=False)
        return spec

    def _compile(self, templates: dict[str, str], loc: tuple[str, ...], *, by_key: bool) -> None:
        try:
            compile_values(templates, **self._limits)
        except TemplateSyntaxError as exc:
            where = (*loc, exc.key) if by_key and exc.key else loc
            raise HookValidationError([(where, exc.message)]) from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch, except that an object whose "type" changes is replaced, not merged."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict) or ("type" in patch and patch["type"] != target.get("type")):
        target = {}
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def parse_spec(raw: dict[str, Any]) -> HookSpec:
    """HookSpec of a JSON-like body; HookValidationError with locations under "body" (the console's forms too)."""
    try:
        return HookSpec.model_validate(raw)
    except ValidationError as exc:
        raise HookValidationError([(("body", *err["loc"]), err["msg"]) for err in exc.errors()]) from None


def _restore_secrets(new: BaseModel, old: BaseModel | None) -> dict[str, Any]:
    """`new` as JSON with each "***" secret replaced by the stored one; 422 when there is none to keep."""
    data = new.model_dump(mode="json")
    old_data = old.model_dump(mode="json") if old is not None else None
    errors = []
    for path in secret_paths(new):
        node, old_node = data, old_data
        for part in path[:-1]:
            node = node[part]
            old_node = old_node.get(part) if isinstance(old_node, dict) else None
        leaf = path[-1]
        if node.get(leaf) != MASK:
            continue
        same_type = isinstance(old_node, dict) and old_node.get("type") == node.get("type")
        if same_type and _moved(new, path, node, old_node):
            # A nested secret follows its own target (auth.client_secret its token_url): never sent elsewhere.
            moved = ", ".join(_owner(new, path).TARGET_FIELDS)
            errors.append((("body", "delivery", *path), f"{moved} changed, so the stored secret is not sent there: "
                                                         "give it again"))
        elif same_type and old_node.get(leaf) is not None:
            node[leaf] = old_node[leaf]
        else:
            msg = f'"{MASK}" keeps a stored secret, but there is none here to keep: send the secret itself'
            errors.append((("body", "delivery", *path), msg))
    if errors:
        raise HookValidationError(errors)
    return data


def _owner(model: BaseModel, path: tuple[str, ...]) -> BaseModel:
    """The model that holds the secret at `path`."""
    for part in path[:-1]:
        model = getattr(model, part)
    return model


def _moved(model: BaseModel, path: tuple[str, ...], node: dict[str, Any], old_node: dict[str, Any]) -> bool:
    """Whether a nested model holding a secret (an auth object) changed its own target fields.

    The delivery's own target (url, host...) is issue 15's rule; this covers targets inside it, like
    an OAuth2 token_url, whose secret goes to that target and not to the receiver.
    """
    if len(path) < 2:
        return False
    return any(node.get(name) != old_node.get(name) for name in _owner(model, path).TARGET_FIELDS)
