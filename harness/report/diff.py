"""Changes between a run and a baseline run: per documents' cell and per case.

A baseline is a previous run directory (or its ``summary.json``); its
``results.jsonl`` (a published run's ``results.jsonl.gz``), when next to the summary,
gives the case-level diff, else the diff is cell-level only.  ``last`` is the most
recent earlier run under the same reports directory; a published site's runs are read by
``site.baseline``.  Cells get worse along supported > partial > unsupported; a
change to or from ``unknown`` (nothing attempted) is "changed", never a regression, and
so is any change of a cell that is ``incomplete`` on either side (some of its planned
cases have no record): "incomplete".  A case of an unfinished run without a record is
"missing", not "vanished".
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Any, Iterable

from ..errors import UserError
from .history import cell_key, earlier_runs, read_summary
from .markdown import cell_rank

LAST = "last"  # the most recent earlier run; an error when there is none
AUTO = "auto"  # the most recent earlier run when there is one (the pipeline's report)
RANK = {"supported": 2, "partial": 1, "unsupported": 0}
PASSED = "passed"
BAD = ("failed", "error")
CHANGE_ORDER = {"regression": 0, "fix": 1, "changed": 2, "incomplete": 3}
CASE_GROUPS = ("regressions", "fixes", "changed", "new", "vanished", "missing")
BASELINE_HELP = ("pass a previous reports/<run-id> directory (or its summary.json), "
                 "'last' for the most recent earlier run, or a published site's URL")


def resolve_baseline(spec: str | None, run_dir: str, reports_dir: str | None = None,
                     started_at: str | None = None, envs: list[str] | None = None
                     ) -> str | None:
    """The baseline's summary.json path for ``--baseline`` ``spec`` (None: no baseline).

    ``last``/``auto``: the most recent complete run under ``reports_dir`` (default: the
    run directory's parent) that started before ``started_at`` and, given ``envs``, ran the
    same environments (a run of one env is no baseline for the whole matrix); ``last``
    raises when there is none, ``auto`` returns None.  A path: a run directory or a
    summary.json.
    """
    if not spec:
        return None
    if spec in (LAST, AUTO):
        reports_dir = reports_dir or os.path.dirname(os.path.abspath(run_dir))
        runs = [(path, summary) for path, summary in
                earlier_runs(reports_dir, run_dir, started_at)
                if (envs is None or sorted(summary.get("envs") or {}) == envs)
                and (summary.get("run") or {}).get("complete") is not False]
        if runs:
            return os.path.join(runs[-1][0], "summary.json")
        if spec == AUTO:
            return None
        raise UserError(f"--baseline last: no earlier run of the same environments with a "
                        f"summary.json under {reports_dir}; run the matrix first or pass "
                        "--baseline PATH")
    path = os.path.join(spec, "summary.json") if os.path.isdir(spec) else spec
    if os.path.basename(path) == "results.jsonl":
        path = os.path.join(os.path.dirname(path), "summary.json")
    if not os.path.isfile(path):
        raise UserError(f"--baseline {spec}: no such run directory or summary.json; "
                        + BASELINE_HELP)
    if read_summary(path) is None:
        raise UserError(f"--baseline {spec}: {path} is not a report summary.json; "
                        + BASELINE_HELP)
    if os.path.realpath(os.path.dirname(path)) == os.path.realpath(run_dir):
        raise UserError(f"--baseline {spec}: that is the run being reported; " + BASELINE_HELP)
    return path


def load_baseline(path: str) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """A baseline's summary and, when a results.jsonl (or a published run's
    results.jsonl.gz) lies next to it, its records."""
    summary = read_summary(path)
    if summary is None:
        raise UserError(f"--baseline {path}: not a report summary.json; " + BASELINE_HELP)
    results = os.path.join(os.path.dirname(path), "results.jsonl")
    if os.path.isfile(results):
        with open(results) as fh:
            return summary, parse_records(fh)
    if os.path.isfile(results + ".gz"):
        with gzip.open(results + ".gz", "rt") as fh:
            return summary, parse_records(fh)
    return summary, None


def parse_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records of a baseline's results.jsonl lines (a line that is no JSON is left out)."""
    records = []
    for line in lines:
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def change_of(before: str, after: str) -> str | None:
    """``regression``/``fix``/``changed`` between two levels, None when equal."""
    if before == after:
        return None
    if before in RANK and after in RANK:
        return "regression" if RANK[after] < RANK[before] else "fix"
    return "changed"


def _cell_rank(cell: dict[str, Any]) -> tuple:
    return (CHANGE_ORDER[cell["change"]],) + cell_rank(cell["format"], cell["operation"],
                                                      cell["column"])


def _count(cell: dict[str, Any] | None) -> str:
    return f"{cell.get('passed', 0)}/{cell.get('attempted', 0)}" if cell else "0/0"


def diff_cells(before: list[dict[str, Any]], after: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """Documents' cells whose level or passed/attempted count changed, regressions first.

    A cell missing on one side is ``unknown`` 0/0 there.  A count change within the same
    level is "changed"; any change of a cell marked ``incomplete`` on either side is
    "incomplete" (never a regression or a fix: its counts are not final).
    """
    old = {cell_key(c): c for c in before}
    new = {cell_key(c): c for c in after}
    out = []
    for key in sorted(set(old) | set(new)):
        b, a = old.get(key), new.get(key)
        b_level = b.get("observed", "unknown") if b else "unknown"
        a_level = a.get("observed", "unknown") if a else "unknown"
        change = change_of(b_level, a_level)
        if change is None and _count(b) != _count(a):
            change = "changed"
        if change is None:
            continue
        if (b or {}).get("incomplete") or (a or {}).get("incomplete"):
            change = "incomplete"
        fmt, op, col = key.split("/", 2)
        out.append({"format": fmt, "operation": op, "column": col, "before": b_level,
                    "after": a_level, "before_count": _count(b), "after_count": _count(a),
                    "change": change})
    return sorted(out, key=_cell_rank)


def _first_line(message: Any) -> str:
    lines = [ln.strip() for ln in str(message or "").splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def _case(case_id: str, before: dict[str, Any] | None, after: dict[str, Any] | None
          ) -> dict[str, Any]:
    """One changed case; the error shown is the current one unless it now passes."""
    shown = after if after is not None and after.get("outcome") != PASSED else before
    shown = shown or after or {}
    return {"case_id": case_id, "before": before.get("outcome") if before else None,
            "after": after.get("outcome") if after else None,
            "error_type": shown.get("error_type"), "message": _first_line(shown.get("message")),
            "repro": (after or before or {}).get("repro")}


def case_group(before: str | None, after: str | None, missing: bool = False) -> str | None:
    """Which list of ``cases`` an outcome change belongs to (None: no change);
    ``missing``: the case has no record because the current run is unfinished."""
    if before == after:
        return None
    if before is None:
        return "new"
    if after is None:
        return "missing" if missing else "vanished"
    if before == PASSED and after in BAD:
        return "regressions"
    if before in BAD and after == PASSED:
        return "fixes"
    return "changed"


def diff_cases(before: list[dict[str, Any]], after: list[dict[str, Any]],
               missing: set[str] | frozenset[str] = frozenset()
               ) -> dict[str, list[dict[str, Any]]]:
    """Cases whose outcome differs (by case id), each group sorted by case id
    (``missing``: the current run's planned cases without a record)."""
    old = {r["case_id"]: r for r in before if r.get("case_id")}
    new = {r["case_id"]: r for r in after if r.get("case_id")}
    groups: dict[str, list[dict[str, Any]]] = {g: [] for g in CASE_GROUPS}
    for case_id in sorted(set(old) | set(new)):
        b, a = old.get(case_id), new.get(case_id)
        group = case_group(b.get("outcome") if b else None, a.get("outcome") if a else None,
                           case_id in missing)
        if group:
            groups[group].append(_case(case_id, b, a))
    return groups


def changes(summary: dict[str, Any], records: list[dict[str, Any]] | None,
            base_summary: dict[str, Any], base_records: list[dict[str, Any]] | None,
            base_path: str, missing: set[str] | frozenset[str] = frozenset()
            ) -> dict[str, Any]:
    """The ``changes`` of a summary against a baseline (case level when both have records;
    ``missing``: this run's planned cases without a record)."""
    cells = diff_cells(base_summary.get("cells") or [], summary.get("cells") or [])
    case_level = records is not None and base_records is not None
    cases = diff_cases(base_records or [], records or [], missing) if case_level else \
        {g: [] for g in CASE_GROUPS}
    run = base_summary.get("run") or {}
    counts = {"cell_regressions": sum(c["change"] == "regression" for c in cells),
              "cell_fixes": sum(c["change"] == "fix" for c in cells),
              "cell_incomplete": sum(c["change"] == "incomplete" for c in cells)}
    counts.update({g: len(v) for g, v in cases.items()})
    return {"baseline": {"run_id": str(run.get("run_id") or os.path.basename(
                os.path.dirname(os.path.abspath(base_path)))), "path": base_path,
                         "case_level": case_level},
            "cells": cells, "cases": cases, "counts": counts}


def regressions(changes_: dict[str, Any]) -> tuple[int, int]:
    """``(cell regressions, case regressions)`` of a changes dict."""
    counts = changes_.get("counts") or {}
    return int(counts.get("cell_regressions", 0)), int(counts.get("regressions", 0))
