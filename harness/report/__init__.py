"""Reports built from result records only: results.jsonl, summary.json, compat.md.

``write_reports`` is what the pipeline's last step and ``harness report`` call;
it reads nothing but the records of a run directory (and, for the changes and
the history, the reports of earlier runs), so the same records give the same
report whether the matrix ran in one process or in many jobs.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

from ..config import Matrix
from .markdown import render

LATEST = "latest"
FILES = ("results.jsonl", "summary.json", "compat.md", "index.html")


def write_reports(run_dir: str, records: list[dict], matrix: Matrix, run: dict[str, Any],
                  envs: dict[str, Any], baseline: str | None = None,
                  reports_dir: str | None = None) -> dict[str, Any]:
    """Write results.jsonl, summary.json, compat.md (and index.html) and refresh latest/.

    ``baseline``: None (no changes), a run directory or summary.json, ``last`` (the most
    recent earlier run under ``reports_dir``; a UserError when there is none) or ``auto``
    (that run when there is one).  ``reports_dir`` (default: the run directory's parent)
    also gives the history: the earlier runs' summaries and this one.
    """
    from .diff import changes, load_baseline, resolve_baseline
    from .history import collect
    from .html import render_html
    from .summary import summarize  # pandas is imported by the report code only

    reports_dir = reports_dir or os.path.dirname(os.path.abspath(run_dir))
    base_path = resolve_baseline(baseline, run_dir, reports_dir, run.get("started_at"),
                                 envs=sorted(envs))
    records = sorted(records, key=lambda r: (r.get("stage") != "create", r["case_id"]))
    with open(os.path.join(run_dir, "results.jsonl"), "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
    for env_id, info in envs.items():
        flavours = sorted({r["keras"] for r in records
                           if r.get("env_id") == env_id and r.get("keras")})
        info["keras"] = ", ".join(flavours) or None
    summary = summarize(records, matrix, run, envs)
    if base_path:
        base_summary, base_records = load_baseline(base_path)
        summary["changes"] = changes(summary, records, base_summary, base_records, base_path)
    summary["history"] = collect(reports_dir, run_dir, summary)
    with open(os.path.join(run_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, sort_keys=True, default=str)
    with open(os.path.join(run_dir, "compat.md"), "w") as fh:
        fh.write(render(summary))
    with open(os.path.join(run_dir, "index.html"), "w") as fh:
        fh.write(render_html(summary, records))
    refresh_latest(run_dir)
    return summary


def refresh_latest(run_dir: str) -> str:
    """Copy the run's report files to ``<reports>/latest/`` (replaced whole)."""
    latest = os.path.join(os.path.dirname(os.path.abspath(run_dir)), LATEST)
    if os.path.abspath(run_dir) == os.path.abspath(latest):
        return latest
    tmp = latest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in FILES:
        shutil.copy2(os.path.join(run_dir, name), os.path.join(tmp, name))
    with open(os.path.join(tmp, "RUN"), "w") as fh:
        fh.write(os.path.basename(os.path.abspath(run_dir)) + "\n")
    shutil.rmtree(latest, ignore_errors=True)
    os.rename(tmp, latest)
    return latest


def read_results(path: str) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
