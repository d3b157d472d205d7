"""Reports built from result records only: results.jsonl, summary.json, compat.md.

``write_reports`` is what the pipeline's last step and ``harness report`` call;
it reads nothing but the records of a run directory, its plans (to tell whether
the run is complete: ``completeness``) and, for the changes and the history, the
reports of earlier runs, so the same records give the same report whether the
matrix ran in one process or in many jobs.  Every JSON it writes is strict
(``jsonio``: no NaN, a missing value is null).  Everything they publish went through the
run's ``redact.Redactor`` (no absolute host path, no private value; ``records/`` stays raw),
and ``latest/`` is replaced atomically (``latest``).
"""
from __future__ import annotations

import json
import os
import platform
from typing import Any

from ..config import Matrix
from ..jsonio import clean, write_json
from .latest import FILES, LATEST, keep_reason, refresh_latest
from .markdown import render

__all__ = ["FILES", "LATEST", "keep_reason", "problems", "read_results", "refresh_latest",
           "write_reports"]


def write_reports(run_dir: str, records: list[dict], matrix: Matrix, run: dict[str, Any],
                  envs: dict[str, Any], baseline: str | None = None,
                  reports_dir: str | None = None, replace_latest: bool = True,
                  history: str | None = None) -> dict[str, Any]:
    """Write results.jsonl, summary.json, compat.md (and index.html) and, when the run is
    complete (``summary["run"]["complete"]``) and ``replace_latest`` (the caller's
    decision: ``keep_reason``), refresh latest/.

    ``baseline``: None (no changes), a run directory or summary.json, ``last`` (the most
    recent earlier run under ``reports_dir``; a UserError when there is none) or ``auto``
    (that run when there is one), or a published site's (``site.baseline``: the URL of
    the site, of one of its runs or of that run's summary.json, or a site directory; a site
    without an earlier run gives no changes, and ``no_baseline`` says so).  ``reports_dir``
    (default: the run directory's parent) also gives the history: the earlier runs'
    summaries and this one; ``history`` (a site's URL or directory, or another reports
    directory) gives it instead.  ``records``, ``run`` and ``envs`` are published as the
    matrix's ``settings.publish`` allows and through the run's redactor
    (``redact.for_run``).
    """
    from ..stages import read_facts
    from ..wheel import PROJECT_ROOT
    from . import docs_table
    from .completeness import check
    from .diff import changes
    from .history import collect
    from .html import render_html
    from .redact import for_run, published_envs, published_run
    from .summary import summarize  # pandas is imported by the report code only

    reports_dir = reports_dir or os.path.dirname(os.path.abspath(run_dir))
    base = _baseline(baseline, run_dir, reports_dir, run, sorted(envs), matrix)
    history_dir, earlier = _history(history, reports_dir, run, sorted(envs), matrix)
    # a record's NaN (a field written by json's default allow_nan) becomes null here
    records = sorted((clean(r) for r in records),
                     key=lambda r: (r.get("stage") != "create", r["case_id"]))
    state = check(run_dir, matrix, records)
    publish = matrix.settings.publish
    redactor = for_run(run_dir, reports_dir, matrix, envs,
                       hosts=[h for h in (run.get("host"), platform.node()) if h])
    records = [redactor.record(r) for r in records]
    run = redactor.tree(published_run({**run, **state.run_fields()}, publish, PROJECT_ROOT))
    envs = redactor.tree(published_envs(envs, publish, matrix.settings.envs_dir))
    _write(os.path.join(run_dir, "results.jsonl"),  # records are clean already
           "".join(json.dumps(rec, sort_keys=True, allow_nan=False) + "\n" for rec in records))
    facts = read_facts(os.path.join(run_dir, "records"))
    for env_id, info in envs.items():
        flavours = sorted({r["keras"] for r in records
                           if r.get("env_id") == env_id and r.get("keras")})
        info["keras"] = ", ".join(flavours) or None
        info["facts"] = redactor.tree(facts.get(env_id, {}), env_id)
    summary = summarize(records, matrix, run, envs, state.missing)
    if isinstance(base, str):
        summary["no_baseline"] = redactor.text(base)
    elif base:
        summary["changes"] = redactor.tree(changes(  # a baseline may be an older, raw one
            summary, records, base[0], base[1], base[2], missing=set(state.missing)))
    summary["history"] = collect(history_dir, run_dir, summary, earlier=earlier)
    summary["docs_table"] = docs_table.build(summary)
    write_json(os.path.join(run_dir, "summary.json"), summary, indent=2, sort_keys=True,
               default=str)
    _write(os.path.join(run_dir, "compat.md"), render(summary))
    _write(os.path.join(run_dir, "docs-table.md"),
           docs_table.render(summary["docs_table"], run.get("run_id")))
    _write(os.path.join(run_dir, "index.html"), render_html(summary, records))
    if state.complete and replace_latest:  # an unfinished run never replaces it
        refresh_latest(run_dir)
    return summary


def _baseline(spec: str | None, run_dir: str, reports_dir: str, run: dict[str, Any],
              envs: list[str], matrix: Matrix
              ) -> tuple[dict[str, Any], list[dict] | None, str] | str | None:
    """``(summary, records or None, where)`` of the baseline ``spec`` names; a string:
    why a published site has none (a first run); None: no baseline."""
    from .diff import load_baseline, resolve_baseline
    from .site import baseline, is_site
    if is_site(spec):
        found = baseline(str(spec), run, envs, matrix.settings.fetch)
        return found.where if found.summary is None else (found.summary, found.records,
                                                         found.where)
    path = resolve_baseline(spec, run_dir, reports_dir, run.get("started_at"), envs=envs)
    return (*load_baseline(path), path) if path else None


def _history(spec: str | None, reports_dir: str, run: dict[str, Any], envs: list[str],
             matrix: Matrix) -> tuple[str, list[dict[str, Any]] | None]:
    """Where the history's earlier runs come from: ``(reports directory, None)``, or a
    published site's earlier summaries (``history.collect``'s arguments)."""
    from ..errors import UserError
    from .site import earlier, is_site
    if not spec:
        return reports_dir, None
    if is_site(spec):
        return reports_dir, earlier(spec, run, envs, matrix.settings.fetch)
    if os.path.isdir(spec):
        return spec, None
    raise UserError(f"--history {spec}: no such site or reports directory; pass a "
                    "published site's URL or directory (with runs/index.json) or a reports "
                    "directory")


def problems(summary: dict[str, Any]) -> list[str]:
    """Why a run's report is no green result, one line each (none: it is one): it executed
    no case, it is incomplete, or it had infrastructure outcomes (``harness run`` and
    ``harness report`` exit 1 on any of them)."""
    from ..runtime.records import INFRA_OUTCOMES
    from .markdown import stage_list
    run, outcomes = summary["run"], summary["totals"]["outcomes"]
    found = []
    if not summary["totals"]["cases"]:
        found.append("the run executed no case")
    if not run.get("complete", True):
        stages = stage_list(run.get("unfinished_stages") or [])
        found.append(f"the run is incomplete: {run.get('missing_cases', 0)} planned cases "
                     "have no record" + (f" (interrupted: {run.get('interrupted_by') or '?'})"
                                         if run.get("interrupted") else "")
                     + (f"; unfinished: {stages}" if stages else "")
                     + "; reports/latest not replaced")
    infra = {o: n for o, n in outcomes.items() if o in INFRA_OUTCOMES}
    if infra:
        found.append("infrastructure failures (not compatibility results): "
                     + ", ".join(f"{n} {o}" for o, n in sorted(infra.items())))
    return found


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_results(path: str) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]
