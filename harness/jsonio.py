"""Strict JSON for every file the host writes: a missing value is ``null``, never ``NaN``.

Python's ``json`` writes ``NaN``/``Infinity`` by default, which no strict parser
(``JSON.parse``, ``jq``) reads.  ``clean`` turns every non-finite float (and
pandas' ``NaT``/``NA``, numpy scalars) into plain JSON values; ``dumps`` and
``write_json`` clean and then dump with ``allow_nan=False``, so a value that is
still not JSON fails here, not in a reader.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any


def clean(value: Any) -> Any:
    """``value`` with every NaN / infinity / NaT / NA replaced by None (containers walked)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # the common case first
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k: clean(v) for k, v in value.items()}
    if kind is list:
        return [clean(v) for v in value]
    return _clean_other(value)


def _clean_other(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return clean(value.tolist())
    try:
        if value != value:  # NaT, and anything else that is not equal to itself
            return None
    except (TypeError, ValueError):  # pandas.NA: its truth value is ambiguous
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``clean(value)`` that refuses NaN and infinities."""
    return json.dumps(clean(value), allow_nan=False, **kwargs)


def write_json(path: str, value: Any, **kwargs: Any) -> None:
    """Write ``value`` as strict JSON to ``path`` atomically (a temporary file, then
    ``os.replace``): a reader never sees half a file."""
    text = dumps(value, **kwargs)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        if not text.endswith("\n"):
            fh.write("\n")
    os.replace(tmp, path)
