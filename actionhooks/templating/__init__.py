"""custom_data templates: compiled when a hook is saved, rendered per event in a sandbox."""

from __future__ import annotations

from actionhooks.templating.parameters import CATALOG_KINDS, PARAMETERS, Catalog, CatalogEntry, DictCatalog
from actionhooks.templating.render import CompiledValues, build_custom_data, compile_values

__all__ = [
    "CATALOG_KINDS",
    "PARAMETERS",
    "Catalog",
    "CatalogEntry",
    "CompiledValues",
    "DictCatalog",
    "build_custom_data",
    "compile_values",
]
