"""Earlier runs under a reports directory: finding them, and the history of levels.

A run is a directory of the reports directory (never ``latest``, a symlink to a copy, nor
the ``.latest-*`` copies themselves: no name starting with ".") with a readable
``summary.json`` whose ``run.started_at`` orders it.  The history is what the report shows
over time: every documents' cell's level and every env x mode's passed/attempted count,
one value per run, oldest first.
"""
from __future__ import annotations

import json
import os
from typing import Any

LATEST = "latest"
HISTORY_RUNS = 30  # earlier runs kept in a history (the current run comes on top)


def read_summary(path: str) -> dict[str, Any] | None:
    """A summary.json as a dict, or None when it is missing, unreadable or not a summary."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("cells"), list) else None


def _started(summary: dict[str, Any]) -> str:
    run = summary.get("run")
    return str(run.get("started_at") or "") if isinstance(run, dict) else ""


def earlier_runs(reports_dir: str, run_dir: str, before: str | None = None
                 ) -> list[tuple[str, dict[str, Any]]]:
    """``(run dir, summary)`` of the other runs under ``reports_dir``, oldest first.

    Only runs with a ``run.started_at``; with ``before`` (the current run's start),
    only runs that started before it.
    """
    try:
        names = sorted(os.listdir(reports_dir))
    except OSError:
        return []
    current = os.path.realpath(run_dir)
    found = []
    for name in names:
        path = os.path.join(reports_dir, name)
        if name == LATEST or name.startswith(".") or os.path.realpath(path) == current:
            continue
        summary = read_summary(os.path.join(path, "summary.json"))
        started = _started(summary) if summary else ""
        if summary is None or not started or (before and started >= before):
            continue
        found.append((started, path, summary))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(path, summary) for _, path, summary in found]


def cell_key(cell: dict[str, Any]) -> str:
    """``<format>/<operation>/<column>`` of a documents' cell."""
    return f"{cell['format']}/{cell['operation']}/{cell['column']}"


def _run_entry(summary: dict[str, Any]) -> dict[str, Any]:
    run = summary.get("run") or {}
    return {"run_id": run.get("run_id"), "started_at": run.get("started_at"),
            "git_commit": run.get("git_commit")}


def _env_passed(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Passed and attempted documents' cases per consumer env x mode."""
    out: dict[str, dict[str, int]] = {}
    for cell in summary.get("env_cells") or []:
        entry = out.setdefault(f"{cell['env_id']}/{cell['mode']}", {"passed": 0, "attempted": 0})
        entry["passed"] += int(cell.get("passed") or 0)
        entry["attempted"] += int(cell.get("attempted") or 0)
    return out


def history(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The history of ``summaries`` (oldest first, the current run last)."""
    levels = [{cell_key(c): c.get("observed") for c in s.get("cells") or []} for s in summaries]
    envs = [_env_passed(s) for s in summaries]
    cell_keys = sorted({k for run in levels for k in run})
    env_keys = sorted({k for run in envs for k in run})
    return {"runs": [_run_entry(s) for s in summaries],
            "cells": {k: [run.get(k) for run in levels] for k in cell_keys},
            "env_passed": {k: [run.get(k) for run in envs] for k in env_keys}}


def collect(reports_dir: str, run_dir: str, summary: dict[str, Any],
            limit: int = HISTORY_RUNS, earlier: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """The history of the last ``limit`` earlier runs under ``reports_dir`` (or of the
    summaries ``earlier``, oldest first: a published site's) plus this one: the runs of
    the same environments that started before it (a run of one env says nothing of the
    others)."""
    before = _started(summary) or None
    envs = sorted(summary.get("envs") or {})
    run_id = (summary.get("run") or {}).get("run_id")
    if earlier is None:
        earlier = [s for _, s in earlier_runs(reports_dir, run_dir, before)]
    same = [s for s in earlier if sorted(s.get("envs") or {}) == envs
            and (s.get("run") or {}).get("run_id") != run_id
            and not (before and _started(s) >= before)]
    return history(same[-limit:] + [summary] if limit > 0 else [summary])
