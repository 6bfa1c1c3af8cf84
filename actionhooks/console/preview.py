"""The editor's live preview: what the hook would deliver for a sample event of the chosen action.

It runs the engine's own path, not a copy: the same sample event as POST /hooks/{id}/test, the same
custom_data limits as the hooks service (CustomData), the same compile and render entry points as
delivery (templating.compile_values, build_custom_data) with the same size and time budgets from
the settings, so whatever bounds templating puts on rendering bound the preview too. A template
error is returned with the key it belongs to, for the page to show next to that value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from actionhooks.api.routes.deliveries import sample_event
from actionhooks.errors import TemplateRenderError, TemplateSyntaxError
from actionhooks.events import EVENT_TYPES
from actionhooks.hooks.models import CustomData
from actionhooks.settings import Settings
from actionhooks.templating import DictCatalog, build_custom_data, compile_values

__all__ = ["Preview", "render_preview"]


@dataclass
class Preview:
    """The pretty JSON of the delivered event, or errors: by custom_data key, and for the whole input."""

    payload: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


def render_preview(
    settings: Settings,
    account_id: int,
    *,
    action: str,
    database_id: int | None,
    profile_fields: list[str],
    values: dict[str, str],
) -> Preview:
    try:
        custom = CustomData.model_validate({"profile_fields": profile_fields, "values": values})
    except ValidationError as exc:
        preview = Preview()
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            if loc[0] == "values" and len(loc) > 1:
                preview.errors[loc[1]] = err["msg"]
            else:
                preview.problem = f"{'.'.join(loc)}: {err['msg']}"
        return preview
    event = sample_event(account_id, frozenset({action} & set(EVENT_TYPES)), database_id)
    try:
        compiled = compile_values(
            custom.values,
            max_output_chars=settings.TEMPLATE_MAX_OUTPUT_CHARS,
            max_render_ms=settings.TEMPLATE_MAX_RENDER_MS,
        )
        data = build_custom_data(
            event, profile_fields=custom.profile_fields, profile=None, values=compiled, catalog=DictCatalog()
        )
    except (TemplateSyntaxError, TemplateRenderError) as exc:
        return Preview(errors={exc.key or "": exc.message})
    delivered: dict[str, Any] = {**event, "custom_data": data} if (data or custom.profile_fields) else event
    return Preview(payload=orjson.dumps([delivered], option=orjson.OPT_INDENT_2).decode())
