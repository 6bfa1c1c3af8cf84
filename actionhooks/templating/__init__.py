"""custom_data templates: compiled when a hook is saved, rendered per event in a sandbox."""

from __future__ import annotations

from actionhooks.templating.parameters import CATALOG_KINDS, PARAMETERS, Catalog, CatalogEntry, DictCatalog
from actionhooks.templating.render import (
    CompiledValues,
    RenderBudget,
    build_custom_data,
    compile_values,
    template_limits,
)

__all__ = [
    "CATALOG_KINDS",
    "PARAMETERS",
    "Catalog",
    "CatalogEntry",
    "CompiledValues",
    "DictCatalog",
    "RenderBudget",
    "build_custom_data",
    "compile_values",
    "template_limits",
]
