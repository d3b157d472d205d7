"""``harness merge DIR... --out RUN_DIR``: one run from the shards of a sharded run.

Each DIR is the ``--out`` of a ``harness run --stage create|consume`` job.  The merge
copies their records, plans, logs, JUnit XML, models and hub server logs into RUN_DIR,
joins their ``envs.json``, writes the run.json a single process would have written (every
stage the matrix plans) and then the same reports as ``harness run``.

Nothing goes missing silently: a planned case that no shard recorded (its job failed, was
cancelled, or its artifact never arrived) becomes a ``crashed`` record that names the
shard, and ``summary.json`` ``run.shards`` lists the shards that failed or are missing.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import time
from typing import Any

from . import config
from .errors import UserError
from .expand import REPRO, EnvRun, expand, stage_plan
from .jsonio import write_json
from .pipeline import (
    ENVS_FILE,
    Options,
    Run,
    Selection,
    _lock_run,
    drop_placeholders,
    gather_stores,
    log,
    report,
    run_file,
    shard_dir,
)
from .report.completeness import check, read_run_file, write_run_file
from .runtime.cases import parse_case_id
from .runtime.records import CRASHED
from .stages import RecordWriter, RunPaths, _synthetic, read_records

COPIED = ("records", "plans", "logs", "junit")  # per stage files: names start with the prefix


def merge(dirs: list[str], out: str, matrix_path: str, run_id: str | None = None,
          baseline: str | None = "auto", history: str | None = None) -> int:
    """Build RUN_DIR ``out`` from the shard directories ``dirs``; the exit status of a
    ``harness run`` of the same matrix (0, or 1 on the report's problems)."""
    matrix = config.load(matrix_path)
    shards = [(d, read_run_file(shard_dir(d, "merge")) or {}) for d in dirs]
    if os.path.exists(os.path.join(out, "records")):
        raise UserError(f"--out {out}: it already holds a run's records; give an empty or new "
                        "directory")
    runs = expand(matrix)
    selection = Selection(runs, runs)
    run_id = run_id or _common_run_id(shards) or time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    os.makedirs(out, exist_ok=True)
    _lock_run(out, run_id)
    run = Run(matrix, selection, run_id, RunPaths(out), options=Options(matrix=matrix_path),
              repro=next((str(m["repro"]) for _, m in shards if m.get("repro")),
                         REPRO))
    run.started = min((_started(m) for _, m in shards), default=time.time())
    ran = _copy_shards(run, shards)
    gather_stores([d for d, _ in shards], run.paths.store)
    envs = _join_envs(shards)
    write_json(os.path.join(out, ENVS_FILE), envs, indent=2, sort_keys=True)
    data = run_file(run)
    data.update(options={}, hub_urls=[u for _, m in shards for u in m.get("hub_urls") or []],
                merged_from=[_shard_entry(d, m) for d, m in shards])
    write_run_file(out, data)
    drop_placeholders(run.paths.records)  # an interrupted shard's: recorded below as crashed
    shards_info = _fill_missing(run, ran, shards, envs)
    run.references = _references(run.paths.root)
    log(f"merged {len(shards)} shards into {out}: {shards_info['merged']} of "
        f"{shards_info['planned']} planned stages ran"
        + (f"; failed: {', '.join(shards_info['failed'])}" if shards_info["failed"] else "")
        + (f"; missing: {', '.join(shards_info['missing'])}" if shards_info["missing"] else ""))
    return report(run, read_records(run.paths.records), envs=envs, baseline=baseline,
                  history=history, extra={"shards": shards_info})


def _common_run_id(shards: list[tuple[str, dict[str, Any]]]) -> str | None:
    ids = {str(m.get("run_id")) for _, m in shards if m.get("run_id")}
    return ids.pop() if len(ids) == 1 else None


def _started(meta: dict[str, Any]) -> float:
    import calendar
    try:
        return float(calendar.timegm(time.strptime(str(meta["started_at"]),
                                                   "%Y-%m-%dT%H:%M:%SZ")))
    except (KeyError, ValueError):
        return time.time()


def _shard_entry(path: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {"name": os.path.basename(os.path.normpath(path)), "run_id": meta.get("run_id"),
            "started_at": meta.get("started_at"), "interrupted": bool(meta.get("interrupted")),
            "stages": [s.get("prefix") for s in meta.get("stages") or []]}


def _copy_shards(run: Run, shards: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Copy each shard's per-stage files; {stage prefix: the shard that ran it}."""
    planned = {s["prefix"] for s in run_file(run)["stages"]}
    ran: dict[str, str] = {}
    hub_log = os.path.join(run.paths.root, "hubserver.jsonl")
    for path, meta in shards:
        name = os.path.basename(os.path.normpath(path))
        for entry in meta.get("stages") or []:
            prefix = str(entry.get("prefix"))
            if prefix not in planned:
                raise UserError(f"merge {path}: that shard ran {prefix}, which "
                                f"{run.matrix.path} does not plan; merge with the matrix "
                                "the shards ran (--matrix)")
            if prefix in ran:
                raise UserError(f"merge {path}: {prefix} was also run by shard {ran[prefix]}; "
                                "give each shard once")
            ran[prefix] = name
        for sub in COPIED:
            for src in glob.glob(os.path.join(glob.escape(path), sub, "*")):
                if os.path.isfile(src):
                    dst = os.path.join(run.paths.sub(sub), os.path.basename(src))
                    shutil.copy2(src, dst)
        if os.path.isfile(os.path.join(path, "hubserver.jsonl")):
            with open(os.path.join(path, "hubserver.jsonl")) as src_fh, \
                    open(hub_log, "a") as dst_fh:
                shutil.copyfileobj(src_fh, dst_fh)
    return ran


def _join_envs(shards: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Every shard's ``envs.json`` in one: an env provisioned by several shards is shown
    as the first one that provisioned it (an error only when none did)."""
    envs: dict[str, Any] = {}
    for path, _ in shards:
        try:
            with open(os.path.join(path, ENVS_FILE)) as fh:
                found = json.load(fh)
        except (OSError, ValueError):
            continue
        for env_id, info in found.items() if isinstance(found, dict) else ():
            if env_id not in envs or envs[env_id].get("provisioned") == "error":
                envs[env_id] = info
    return envs


def _fill_missing(run: Run, ran: dict[str, str], shards: list[tuple[str, dict[str, Any]]],
                  envs: dict[str, Any]) -> dict[str, Any]:
    """A ``crashed`` record for every planned case no shard recorded; the shards that
    failed (ran, but interrupted or with cases left unrecorded) and the missing ones (no
    shard ran the stage), as ``<stage>-<env>-<mode>`` job names."""
    state = check(run.paths.root, run.matrix)
    interrupted = {str(s.get("prefix")) for _, m in shards if m.get("interrupted")
                   for s in m.get("stages") or []}
    planned = run_file(run)["stages"]
    failed: list[str] = []
    missing: list[str] = []
    for entry in planned:
        prefix = entry["prefix"]
        ids = sorted(cid for cid, p in state.stage_of.items() if p == prefix)
        shard = ran.get(prefix)
        job = f"{entry['stage']}-{entry['env_id']}-{entry['mode']}"
        if shard is None:
            missing.append(job)
        elif ids or prefix in interrupted:
            failed.append(job)
        if not ids:
            continue
        why = (f"shard {shard} ran stage {prefix} but did not record this case (its job "
               "failed, timed out or was cancelled); see that job's log" if shard else
               f"no shard ran stage {prefix}: job {job} failed before uploading its "
               "artifact, or the artifact is missing; see that job's log")
        env_run = EnvRun(run.matrix.env(entry["env_id"]), entry["mode"])
        plan = stage_plan(run.matrix, env_run, entry["stage"], run.run_id, run.paths.store,
                          run.paths.records, None, {"repro": run.repro})
        versions = (envs.get(entry["env_id"]) or {}).get("versions") or {}
        writer = RecordWriter(os.path.join(run.paths.records, prefix + ".merge.jsonl"))
        for cid in ids:
            writer.write(_synthetic(parse_case_id(cid), plan, CRASHED,
                                    "ShardIncomplete" if shard else "ShardMissing", why,
                                    versions))
    return {"planned": len(planned), "merged": len(ran), "failed": failed,
            "missing": missing}


def _references(root: str) -> dict[str, list[str]]:
    """The user's models' reference producers, as the consume shards' plans had them."""
    refs: dict[str, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(root, "plans", "consume.*.json"))):
        try:
            with open(path) as fh:
                refs.update(json.load(fh).get("references") or {})
        except (OSError, ValueError):
            continue
    return refs

