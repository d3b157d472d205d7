"""``harness bisect CASE_ID``: the first release at which a case's outcome changes.

The case's env (``--side consumer``, the default) or its producer (``--side producer``) is
swapped for the other envs of the matrix's release axis that stand for the same thing: the
same flavour on ``--axis tensorflow`` (ordered by release), the same release on ``--axis
tensorflow_hub`` (ordered by the tensorflow_hub version pinned).  The two ends run first;
when they differ, a binary search runs the middle until two neighbours differ.  Each probe
is a real ``harness run --case`` (the probed env is provisioned then, and only then), so a
search over the 23 releases provisions about 7 envs, not 23.  It assumes one change between
the ends; the versions matrix shows every release (a history that works, breaks, works
again has more than one boundary, and the search finds one of them).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Any

from packaging.requirements import Requirement
from packaging.version import Version

from . import config
from .config import Env, Matrix
from .errors import UserError
from .expand import parse_case_id
from .runtime.cases import Case


def _hub_pin(env: Env) -> Version:
    for text in env.packages:
        req = Requirement(text)
        if req.name == "tensorflow-hub":
            pins = [s.version for s in req.specifier if s.operator in ("==", "~=", ">=")]
            if pins:
                return Version(pins[0].replace(".*", ""))
    return Version("0")


def candidates(matrix: Matrix, env: Env, mode: str, axis: str) -> list[Env]:
    """The envs standing in for ``env`` along ``axis`` that run ``mode``, in order."""
    if not env.release:
        raise UserError(f"{env.id} is not on a release axis (no releases: table in "
                        f"{matrix.path}); bisect a case of matrices/versions.yaml")
    if axis == "tensorflow":
        found = [e for e in matrix.envs if e.flavour == env.flavour and mode in e.modes]
        return sorted(found, key=lambda e: Version(e.release))
    found = [e for e in matrix.envs if e.release == env.release and mode in e.modes]
    return sorted(found, key=_hub_pin)


def _swap(case: Case, side: str, env_id: str) -> str:
    c = replace(case, env_id=env_id) if side == "consumer" else replace(case,
                                                                         producer_env=env_id)
    return c.case_id


def bisect(case_text: str, matrix_path: str, axis: str = "tensorflow",
           side: str = "consumer", log=print) -> dict[str, Any]:
    from .pipeline import Options, execute
    matrix = config.load(matrix_path)
    case = parse_case_id(case_text)
    if side == "producer" and case.operation in ("create", "health"):
        raise UserError(f"--side producer: {case_text} has no producer; use --side consumer")
    env_id, mode = (case.env_id, case.mode) if side == "consumer" else \
        (case.producer_env, case.producer_mode)
    try:
        env = matrix.env(env_id)
    except KeyError:
        raise UserError(f"{case_text}: env {env_id!r} is not in {matrix_path}; pass the "
                        "matrix the case came from (--matrix)")
    line = candidates(matrix, env, mode, axis)
    if len(line) < 2:
        raise UserError(f"{env_id}: no other env along --axis {axis} runs mode {mode}")
    results: dict[int, dict[str, Any]] = {}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    def probe(i: int) -> dict[str, Any]:
        if i not in results:
            cid = _swap(case, side, line[i].id)
            run_id = f"bisect-{stamp}-{i}"
            log(f"bisect: probing {line[i].id} ({cid})")
            execute(Options(matrix=matrix_path, case=cid, run_id=run_id))
            path = os.path.join(matrix.settings.reports_dir, run_id, "results.jsonl")
            with open(path) as fh:
                recs = [json.loads(ln) for ln in fh if ln.strip()]
            rec = next((r for r in recs if r["case_id"] == cid), None)
            if rec is None:
                raise UserError(f"bisect: {cid} was not run (is the variant made in "
                                f"{line[i].id}?); see reports/{run_id}")
            results[i] = rec
        return results[i]

    def key(rec: dict[str, Any]) -> tuple:
        return rec["outcome"], rec.get("error_type")
    lo, hi = 0, len(line) - 1
    if key(probe(lo)) == key(probe(hi)):
        return {"boundary": None, "axis": axis, "side": side, "envs": [e.id for e in line],
                "probed": {line[i].id: results[i] for i in sorted(results)}}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if key(probe(mid)) == key(probe(lo)):
            lo = mid
        else:
            hi = mid
    return {"boundary": {"before": line[lo].id, "after": line[hi].id,
                         "before_record": results[lo], "after_record": results[hi]},
            "axis": axis, "side": side, "envs": [e.id for e in line],
            "probed": {line[i].id: results[i] for i in sorted(results)}}


def describe(found: dict[str, Any]) -> str:
    def side(rec: dict[str, Any]) -> str:
        msg = (rec.get("message") or "").strip().splitlines()
        return (f"{rec['outcome']}" + (f" {rec.get('error_type')}: {msg[0][:200]}" if msg
                                       else "") + f"  ({rec['case_id']})")
    b = found["boundary"]
    if b is None:
        ends = list(found["probed"].values())
        return (f"no change along {found['axis']} ({found['side']}): both ends "
                f"{side(ends[0])} / {side(ends[-1])}")
    return (f"boundary along {found['axis']} ({found['side']}): {b['before']} -> {b['after']}"
            f"\n  {b['before']}: {side(b['before_record'])}"
            f"\n  {b['after']}: {side(b['after_record'])}"
            f"\n  probed {len(found['probed'])} of {len(found['envs'])} envs")
