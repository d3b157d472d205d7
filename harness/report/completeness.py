"""Is a run complete?  Which of its planned cases have no record?

The pipeline writes ``reports/<run>/run.json`` before anything runs: the run id, the
matrix, ``started_at``, the models and every planned stage (stage, env id, mode, its
``prefix`` and the case ids ``--case`` selected), and ``interrupted: true`` after a
Ctrl-C, SIGTERM or SIGHUP.  The cases a planned stage expects are, from the best source on disk:

1. ``records/<prefix>.collected.json``: what the stage's pytest process collected;
2. ``plans/<prefix>.json`` expanded with ``plan_cases``: the stage started but its process
   never finished collecting;
3. the plan the stage would have had (``expand.stage_plan``), expanded the same way: it
   never started (a consume stage's cases then come from the models the store holds, so
   the count is a lower bound when the create stage did not finish either).

A run without ``run.json`` (older than it) is judged by the plan files it has, and so
is a stage whose plan is there but which ``run.json`` does not list (shards of CI jobs
merged into one directory: one job's ``run.json`` is kept).  A case
is recorded when a record has its id, except the placeholder the host writes for a case
that an interrupted run never ran: that case is missing too.  A run is complete
when no planned case is missing and it was not interrupted.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .. import registry
from ..config import Env, Matrix
from ..expand import EnvRun, reference_producers, stage_plan
from ..jsonio import write_json
from ..runtime.cases import base_model, parse_case_id, plan_cases
from ..runtime.records import CRASHED
from ..stages import INTERRUPTED_MESSAGE, read_records

RUN_FILE = "run.json"
HUB_PLACEHOLDER = "http://127.0.0.1/"  # a consume stage always runs with the hub server


@dataclass
class Completeness:
    interrupted: bool = False
    interrupted_by: str | None = None  # "Ctrl-C", "SIGTERM", "SIGHUP" when known
    missing: dict[str, str] = field(default_factory=dict)  # case id -> its model's kind
    stage_of: dict[str, str] = field(default_factory=dict)  # missing case id -> stage prefix
    unfinished: list[dict[str, Any]] = field(default_factory=list)  # one per stage

    @property
    def complete(self) -> bool:
        return not self.missing and not self.interrupted

    def run_fields(self) -> dict[str, Any]:
        """What ``summary.json: run`` says about it."""
        return {"complete": self.complete, "interrupted": self.interrupted,
                "interrupted_by": self.interrupted_by, "missing_cases": len(self.missing),
                "unfinished_stages": self.unfinished}


def planned_stage(stage: str, run: EnvRun, select: list[str] | None) -> dict[str, Any]:
    """One planned stage as run.json lists it."""
    return {"stage": stage, "env_id": run.env.id, "mode": run.mode,
            "prefix": run.prefix(stage), "select": select}


def write_run_file(run_dir: str, data: dict[str, Any]) -> None:
    write_json(os.path.join(run_dir, RUN_FILE), data, indent=2, sort_keys=True)


def read_run_file(run_dir: str) -> dict[str, Any] | None:
    data = _read_json(os.path.join(run_dir, RUN_FILE))
    return data if isinstance(data, dict) else None


def is_placeholder(rec: dict[str, Any]) -> bool:
    """The host's record for a case an interrupted run never ran."""
    return rec.get("outcome") == CRASHED and \
        str(rec.get("message") or "").startswith(INTERRUPTED_MESSAGE)


def check(run_dir: str, matrix: Matrix, records: list[dict[str, Any]] | None = None
          ) -> Completeness:
    """The planned cases of ``run_dir`` without a record (``records``: its records, read
    from ``records/`` when not given)."""
    records_dir = os.path.join(run_dir, "records")
    if records is None:
        records = read_records(records_dir)
    meta = read_run_file(run_dir) or {}
    listed = meta.get("stages")
    stages: list[dict[str, Any]] = list(listed) if isinstance(listed, list) else []
    known = {s.get("prefix") for s in stages}  # + plans of stages run.json does not list
    stages += [s for s in _stages_from_plans(run_dir) if s["prefix"] not in known]
    recorded = {r.get("case_id") for r in records if not is_placeholder(r)}
    placeholders = [r for r in records if is_placeholder(r)]
    out = Completeness(interrupted=bool(meta.get("interrupted") or placeholders),
                       interrupted_by=meta.get("interrupted_by") or _stopped_by(placeholders))
    for entry in stages:
        expected, state = _expected(run_dir, matrix, meta, stages, entry, records)
        gone = {cid: kind for cid, kind in expected.items() if cid not in recorded}
        if gone:
            out.unfinished.append({"prefix": entry["prefix"], "state": state,
                                   "planned": len(expected), "missing": len(gone)})
            out.missing.update(gone)
            out.stage_of.update(dict.fromkeys(gone, entry["prefix"]))
    return out


def _stopped_by(placeholders: list[dict[str, Any]]) -> str | None:
    """"SIGTERM" of "the run was interrupted (SIGTERM) before ..." (None: no placeholder)."""
    for rec in placeholders:
        return str(rec["message"])[len(INTERRUPTED_MESSAGE):].partition(")")[0] or None
    return None


def _read_json(path: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _stages_from_plans(run_dir: str) -> list[dict[str, Any]]:
    """An older run (no run.json): the stages whose plan the host wrote."""
    stages = []
    for path in sorted(glob.glob(os.path.join(run_dir, "plans", "*.json"))):
        plan = _read_json(path)
        if isinstance(plan, dict) and plan.get("prefix"):
            stages.append({"stage": plan.get("stage"), "env_id": plan["env"]["id"],
                           "mode": plan.get("mode"), "prefix": plan["prefix"],
                           "select": plan.get("select")})
    return stages


def _models(matrix: Matrix, meta: dict[str, Any], plan: dict[str, Any] | None
            ) -> list[dict[str, Any]]:
    for source in (plan, meta):
        if source and isinstance(source.get("models"), list):
            return source["models"]
    return [{"name": m.name, "spec": m.spec} for m in matrix.models]


def _kind_of(case_id: str, kinds: dict[str, str]) -> str:
    """A collected case's model kind, known from its model's name ("" for health checks)."""
    try:
        case = parse_case_id(case_id)
    except ValueError:
        return "mlp"
    if case.operation == "health":
        return ""
    return kinds.get(case.model) or kinds.get(base_model(case.model)) or "mlp"


def _expected(run_dir: str, matrix: Matrix, meta: dict[str, Any],
              stages: list[dict[str, Any]], entry: dict[str, Any],
              records: list[dict[str, Any]]) -> tuple[dict[str, str], str]:
    """(case id -> model kind) a planned stage expects, and where that came from:
    ``collected``, ``planned`` or ``not_started``."""
    prefix = entry["prefix"]
    plan = _read_json(os.path.join(run_dir, "plans", prefix + ".json"))
    plan = plan if isinstance(plan, dict) else None
    collected = _read_json(os.path.join(run_dir, "records", prefix + ".collected.json"))
    if isinstance(collected, list):
        kinds = {m["name"]: (m.get("spec") or {}).get("kind", "mlp")
                 for m in _models(matrix, meta, plan)}
        return {cid: _kind_of(cid, kinds) for cid in collected}, "collected"
    state = "planned"
    if plan is None:
        plan, state = _unstarted_plan(run_dir, matrix, meta, stages, entry, records), \
            "not_started"
    plan = dict(plan, store=os.path.join(run_dir, "store"))
    try:
        return {c.case_id: c.kind for c in plan_cases(plan, registry.variants())}, state
    except (OSError, ValueError, KeyError):  # a manifest half-written by a killed run
        return {}, state


def _unstarted_plan(run_dir: str, matrix: Matrix, meta: dict[str, Any],
                    stages: list[dict[str, Any]], entry: dict[str, Any],
                    records: list[dict[str, Any]]) -> dict[str, Any]:
    """The plan a stage that never started would have had."""
    env_id, mode, stage = entry["env_id"], entry["mode"], entry["stage"]
    try:
        env = matrix.env(env_id)
    except KeyError:  # reported with another matrix: the plan needs only the env's id
        env = Env(env_id, "", (), (mode,))
    models = _models(matrix, meta, None)
    extra: dict[str, Any] = {"models": models}
    if stage == "consume":
        users = {m["name"] for m in models if (m.get("spec") or {}).get("kind") == "user"}
        order = [f"{e['env_id']}/{e['mode']}" for e in stages if e.get("stage") == "create"]
        extra.update(hub_url=HUB_PLACEHOLDER,
                     references=reference_producers(records, users, order))
    return stage_plan(matrix, EnvRun(env, mode), stage, str(meta.get("run_id") or ""),
                      os.path.join(run_dir, "store"), os.path.join(run_dir, "records"),
                      entry.get("select"), extra)
