"""Pure expansion: matrix -> env runs (env x mode), install groups, stage plans."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .config import Env, Matrix
from .errors import UserError
from .runtime import cases
from .runtime.cases import STAGES, Case

REPRO = "nox -s matrix -- --case {case_id}"  # the command that re-runs one case


@dataclass(frozen=True)
class EnvRun:
    env: Env
    mode: str

    @property
    def key(self) -> str:
        return f"{self.env.id}/{self.mode}"

    def prefix(self, stage: str) -> str:
        return f"{stage}.{self.env.id}.{self.mode}"


def ci_plan(matrix: Matrix, matrix_path: str) -> dict:
    """``harness plan --json``: the jobs of a sharded run, each stage as a GitHub Actions
    ``strategy.matrix`` (``include``): one job per env x mode, named as the workflow shows
    it, with the artifact its ``--out`` directory is uploaded as."""
    stages = {}
    for stage in STAGES:
        stages[stage] = {"include": [
            {"env": r.env.id, "mode": r.mode, "python": r.env.python,
             "name": f"{stage} {r.key}", "artifact": f"{stage}-{r.env.id}-{r.mode}"}
            for r in expand(matrix)]}
    return {"matrix": matrix_path, **stages,
            "jobs": {stage: len(stages[stage]["include"]) for stage in STAGES}}


def install_key(env: Env) -> str:
    """Identity of an install: envs that differ only in env_vars share one."""
    blob = json.dumps({"python": env.python, "packages": sorted(env.packages),
                       "backend": env.backend}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def expand(matrix: Matrix, envs: tuple[str, ...] = (), modes: tuple[str, ...] = ()
           ) -> list[EnvRun]:
    """Every env x mode of the matrix, optionally narrowed; stable order."""
    unknown = [e for e in envs if e not in {env.id for env in matrix.envs}]
    if unknown:
        known = ", ".join(env.id for env in matrix.envs)
        raise UserError(f"{matrix.path}: --env {unknown[0]!r} is not in the matrix "
                        f"(known: {known}); pick one of those")
    runs = [EnvRun(env, mode) for env in matrix.envs for mode in env.modes
            if (not envs or env.id in envs) and (not modes or mode in modes)]
    if not runs:
        raise UserError(f"{matrix.path}: the selection (--env {','.join(envs) or '*'} "
                        f"--mode {','.join(modes) or '*'}) matches no env x mode; widen it")
    return runs


def stage_plan(matrix: Matrix, run: EnvRun, stage: str, run_id: str, store: str,
               results_dir: str, select: list[str] | None = None,
               extra: dict | None = None) -> dict:
    """The JSON plan one in-environment pytest process receives.

    ``extra`` overrides keys: ``references`` (a user's model -> its reference env x
    mode) and ``repro`` (the command template, which must name ``--model`` runs' models).
    """
    assert stage in STAGES
    env = run.env
    return {
        "schema_version": 1,
        "run_id": run_id,
        "stage": stage,
        "mode": run.mode,
        "prefix": run.prefix(stage),
        "env": {"id": env.id, "python": env.python, "backend": env.backend,
                "device": env.device, "packages": list(env.packages),
                "env_vars": dict(env.env_vars)},
        "store": store,
        "results_dir": results_dir,
        "models": [{"name": m.name, "spec": m.spec} for m in matrix.models],
        "tolerance": {"atol": matrix.settings.atol, "rtol": matrix.settings.rtol},
        "select": select,
        "references": {},
        "repro": REPRO,
        "sample": sample_plan(matrix),
        **(extra or {}),
    }


def sample_plan(matrix: Matrix) -> dict | None:
    """The plan's ``sample`` (``cases._sampled``): the matrix's ``sampling`` with the
    release and flavour of every env (an env off the release axis is its own release)."""
    s = matrix.sampling
    if s is None:
        return None
    primary: dict[str, dict[str, str]] = {}
    for fmt, column, api in s.primary:
        primary.setdefault(column, {})[fmt] = api
    return {"full": [e for e in s.full if e != "own"], "primary": primary,
            "order": [e.id for e in matrix.envs],
            "release": {e.id: e.release or e.id for e in matrix.envs},
            "flavour": {e.id: e.flavour for e in matrix.envs}}


def reference_producers(records: list[dict], users: set[str], order: list[str]
                        ) -> dict[str, list[str]]:
    """Each user's model -> ``[env, mode]`` of the first env x mode in ``order``
    (``env/mode`` keys, matrix order) whose create stage imported it (passed)."""
    rank = {key: i for i, key in enumerate(order)}
    refs: dict[str, list[str]] = {}
    for rec in sorted((r for r in records
                       if r.get("operation") == "create" and r.get("model") in users
                       and r.get("outcome") == "passed"),
                      key=lambda r: rank.get(f"{r['env_id']}/{r['mode']}", len(rank))):
        refs.setdefault(rec["model"], [rec["env_id"], rec["mode"]])
    return refs


def parse_case_id(case_id: str) -> Case:
    """The case ``--case`` names, or a one-line UserError."""
    try:
        return cases.parse_case_id(case_id)
    except ValueError:
        raise UserError(f"--case {case_id!r}: not a case id; copy one from "
                        "reports/latest/results.jsonl (env/mode/format/operation/api/model"
                        "[@producer_env/producer_mode])")
