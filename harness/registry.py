"""Host view of the plugins: the same ``pytest11`` entry points the environments load.

The host never runs a case; it needs the variants' metadata (formats, operations,
modes) to validate ``matrix.yaml`` and to expand the cases of an environment that
could not be provisioned into ``env_error`` records.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from .runtime.cases import Variant
from .runtime.formats import BUILTIN

HOOK = "pytest_tfhub_compat_variants"


@lru_cache(maxsize=1)
def variants() -> tuple[Variant, ...]:
    """Every registered variant: built-ins plus ``pytest11`` plugins implementing the hook."""
    modules = {name: importlib.import_module(name) for name in BUILTIN}
    for ep in entry_points(group="pytest11"):
        if ep.value not in modules:
            try:
                module = importlib.import_module(ep.value)
            except Exception:  # an unrelated, broken pytest plugin is not ours to report
                continue
            if hasattr(module, HOOK):
                modules[ep.value] = module
    found: list[Variant] = []
    for module in modules.values():
        found.extend(getattr(module, HOOK)())
    return tuple(found)


def formats() -> tuple[str, ...]:
    return tuple(sorted({v.format for v in variants()}))
