"""The registry of report kinds. Each module of this package defines one kind and
registers it; adding a kind is adding one file here."""

from __future__ import annotations

import importlib
import pkgutil

from reports.kinds.base import DateRangeForm, Kind, KindForm, day_bounds

__all__ = ["DateRangeForm", "Kind", "KindForm", "all_kinds", "day_bounds", "get", "register"]

_registry: dict[str, Kind] = {}
_loaded = False


def register(kind: Kind) -> Kind:
    if kind.name in _registry and _registry[kind.name] is not kind:
        raise ValueError(f"Two report kinds are named {kind.name!r}")
    _registry[kind.name] = kind
    return kind


def _load() -> None:
    # Imported on first use rather than at import time: kind modules import models.
    global _loaded
    if _loaded:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    _loaded = True


def get(name: str) -> Kind | None:
    _load()
    return _registry.get(name)


def all_kinds() -> list[Kind]:
    _load()
    return sorted(_registry.values(), key=lambda kind: kind.order)
