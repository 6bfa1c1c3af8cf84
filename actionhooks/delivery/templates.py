"""Per-event templates of a delivery config (Kafka key, stream, subject and topic names, S3 prefix...).

The same compiler as custom_data (actionhooks.templating), under the same size and time bounds. A
transport has no catalog, so catalog names (campaign_name...) render empty. The hook service
compiles every TEMPLATE_FIELDS entry at save, so a template that fails here is one that broke a
bound on one event: that event can never be sent as configured (PayloadError, not retried).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actionhooks.errors import PayloadError, TemplateError
from actionhooks.settings import Settings
from actionhooks.templating import DictCatalog, compile_values

__all__ = ["FieldTemplate"]

_NO_CATALOG = DictCatalog()


class FieldTemplate:
    """One templated field of a delivery config, compiled once per transport."""

    def __init__(self, config: Any, field: str, settings: Settings) -> None:
        self.field = field
        self.source: str = getattr(config, field)
        self._compiled = compile_values(
            {field: self.source},
            max_output_chars=settings.TEMPLATE_MAX_OUTPUT_CHARS,
            max_render_ms=settings.TEMPLATE_MAX_RENDER_MS,
        )
        # A template without any parameter renders the same for every event: render it once.
        self._constant = self.source if "{" not in self.source else None

    def render(self, event: Mapping[str, Any]) -> str:
        """The field's value for `event`; PayloadError naming the field when it breaks a bound."""
        if self._constant is not None:
            return self._constant
        try:
            return self._compiled.render(event, _NO_CATALOG)[self.field]
        except TemplateError as exc:
            raise PayloadError(f"{self.field} template: {exc.message}", retryable=False) from exc
