"""Hook rules over a repository: what create, replace, patch, clone, activate, stop and delete mean.

Every save goes through `_prepare`, which takes a hook HookSpec validated (the API's body, or a
PATCH merged and parsed by `parse_spec`), (1) puts back the stored secret wherever a client sent
"***" (secrets are write-only, so a client that echoes a hook it read must not wipe them), and (2)
compiles its templates with hooks/matching.py's `compile_templates`, the worker's own, so a hook
that saves is a hook the worker can run. Any problem raises HookValidationError with locations under "body", before
the repository writes anything.

PATCH is a JSON merge patch (RFC 7396) over the stored hook: objects merge key by key, `null` removes
a key (its default applies), anything else replaces. When a patch changes `delivery.type` (or
`delivery.auth.type`) that object is replaced, not merged, since fields of the old type mean nothing
to the new one.

Secrets follow their target (README, Security "Secrets"): a secret is only ever restored from "***" for the
target it was given for (the delivery model's `target()`: a URL's scheme, host and port, a broker's
host, port and vhost, Kafka's bootstrap servers). A PATCH is merged over the hook *as the API shows
it* (secrets masked), so a secret the change does not give again is dropped when the target moves:
one with a default falls back to it (a new signing secret, AMQP "guest", no SASL password), one the
type requires (a basic password, a bearer token) is asked for with a 422.

Clone copies the configuration without any secret (anyone with a token could otherwise recover a
write-only secret by cloning a hook towards a receiver of their own): auth objects whose secret is
required fall back to no auth, credentials inside the URL and secret-named headers are removed, and
a new signing secret is generated. A type that cannot exist without its secret (SQS and S3 need the
secret access key) cannot be cloned: 422. The copy is stopped, named "<name> (copy)".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import ValidationError

from actionhooks.delivery.config import MASK, parse_delivery
from actionhooks.errors import HookValidationError
from actionhooks.hooks.matching import compile_templates
from actionhooks.hooks.models import NAME_MAX_LENGTH, Hook, HookSpec, masked_delivery, secret_paths
from actionhooks.settings import Settings

__all__ = ["HookRepository", "HookService", "merge_patch", "parse_spec"]

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
        self._settings = settings

    def create(self, account_id: int, spec: HookSpec) -> Hook:
        return self._repo.add(account_id, self._prepare(spec, None))

    def get(self, account_id: int, hook_id: int) -> Hook:
        return self._repo.get(account_id, hook_id)

    def list(self, account_id: int) -> list[Hook]:
        return self._repo.list(account_id)

    def replace(self, account_id: int, hook_id: int, spec: HookSpec) -> Hook:
        return self._repo.update(account_id, hook_id, lambda old: self._prepare(spec, old.spec))

    def patch(self, account_id: int, hook_id: int, patch: dict[str, Any]) -> Hook:
        def change(old: Hook) -> HookSpec:
            shown = {**old.spec.model_dump(mode="json"), "delivery": masked_delivery(old.spec.delivery)}
            return self._prepare(parse_spec(merge_patch(shown, patch)), old.spec)

        return self._repo.update(account_id, hook_id, change)

    def clone(self, account_id: int, hook_id: int) -> Hook:
        old = self._repo.get(account_id, hook_id)
        name = old.spec.name[: NAME_MAX_LENGTH - len(_COPY_SUFFIX)] + _COPY_SUFFIX
        required = [path for path in secret_paths(old.spec.delivery)
                    if len(path) == 1 and _is_required(old.spec.delivery, path)]
        if required:  # e.g. SQS's secret_access_key: there is no secret-less form of this type to copy
            msg = "a clone carries no secret and this delivery type requires one: create the hook with it instead"
            raise HookValidationError([(("delivery", *path), msg) for path in required])
        delivery = _delivery(_without_secrets(old.spec.delivery), (), old.spec.delivery)
        return self._repo.add(account_id, old.spec.model_copy(update={"name": name, "active": False,
                                                                       "delivery": delivery}))

    def activate(self, account_id: int, hook_id: int) -> Hook:
        return self._set_active(account_id, hook_id, True)

    def stop(self, account_id: int, hook_id: int) -> Hook:
        return self._set_active(account_id, hook_id, False)

    def _set_active(self, account_id: int, hook_id: int, active: bool) -> Hook:
        return self._repo.update(account_id, hook_id, lambda old: old.spec.model_copy(update={"active": active}))

    def delete(self, account_id: int, hook_id: int) -> None:
        self._repo.delete(account_id, hook_id)

    def _prepare(self, spec: HookSpec, stored: HookSpec | None) -> HookSpec:
        delivery, dropped = _restore_secrets(spec.delivery, stored.delivery if stored else None)
        spec = spec.model_copy(update={"delivery": _delivery(delivery, dropped, spec.delivery)})
        try:
            compile_templates(spec, self._settings)
        except HookValidationError as exc:
            raise HookValidationError([(("body", *loc), msg) for loc, msg in exc.errors]) from None
        return spec


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


def _restore_secrets(new: Any, old: Any | None) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
    """`new` as JSON with each "***" secret replaced by the stored one while the target stays the same.

    Returns the data and the paths of the secrets dropped because the target moved; 422 for a "***"
    with nothing to keep.
    """
    data = new.model_dump(mode="json")
    moved = old is not None and (type(new) is not type(old) or new.target() != old.target())
    old_data = old.model_dump(mode="json") if old is not None else None
    errors = [(("body", "delivery", *path), msg) for path, msg in new.restore_inline(data, old)]
    dropped: list[tuple[str, ...]] = []
    for path in secret_paths(new):
        node, old_node = data, old_data
        for part in path[:-1]:
            node = node[part]
            old_node = old_node.get(part) if isinstance(old_node, dict) else None
        leaf = path[-1]
        if node.get(leaf) != MASK:
            continue
        same_type = isinstance(old_node, dict) and old_node.get("type") == node.get("type")
        if same_type and old_node.get(leaf) is not None:
            if moved or _nested_target_moved(data, old, path):  # never sent to a target it was not given for
                del node[leaf]
                dropped.append(path)
            else:
                node[leaf] = old_node[leaf]
        else:
            msg = f'"{MASK}" keeps a stored secret, but there is none here to keep: send the secret itself'
            errors.append((("body", "delivery", *path), msg))
    if errors:
        raise HookValidationError(errors)
    return data, dropped


def _delivery(data: dict[str, Any], dropped: Sequence[tuple[str, ...]], model: Any) -> Any:
    """Validate a delivery whose `dropped` secrets were removed; 422 naming each one its type requires."""
    required = [path for path in dropped if _is_required(model, path)]
    if required:
        msg = "the delivery target changed, so the stored secret is not sent there: give it again"
        raise HookValidationError([(("body", "delivery", *path), msg) for path in required])
    return parse_delivery(data)


def _is_required(model: Any, path: tuple[str, ...]) -> bool:
    *parents, leaf = path
    for part in parents:
        model = getattr(model, part)
    return bool(type(model).model_fields[leaf].is_required())


def _without_secrets(delivery: Any) -> dict[str, Any]:
    """`delivery` as JSON without its secrets (for a clone): defaults apply, required ones drop their object."""
    data = delivery.model_dump(mode="json")
    delivery.drop_inline(data)
    for path in secret_paths(delivery):
        *parents, leaf = path
        node = data
        for part in parents:
            node = node[part]
        if parents and _is_required(delivery, path):
            data.pop(parents[0], None)  # e.g. basic auth without its password: the default (no auth) applies
        else:
            node.pop(leaf, None)
    return data


def _nested_target_moved(data: dict[str, Any], old: Any, path: tuple[str, ...]) -> bool:
    """Whether the nested model holding the secret at `path` (an auth object) changed its own target.

    The secret of an OAuth2 auth goes to its token_url, not to the receiver: it follows that target
    too (the TARGET_FIELDS of delivery/config.py). `data` is the new delivery as JSON with the inline
    credentials a client echoed masked already restored, so a token_url sent back as shown is the same.
    """
    if len(path) < 2:
        return False
    for part in path[:-1]:
        data, old = data[part], getattr(old, part)
    shown = old.model_dump(mode="json")  # the form `data` has (a URL as text, a list of URLs as a list)
    return any(data.get(name) != shown.get(name) for name in old.TARGET_FIELDS)
