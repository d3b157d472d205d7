"""The exact merge (issue "Nightly CI"): the same small matrix (tf115 and tf215-hub015,
both modes each, real installs) once as one `harness run`, once as create shards, then
consume shards over the combined stores, each in its own directory, then `harness merge`.
Same case ids, same outcomes, same cells; only timings, run ids and paths may differ."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .runs import ROOT, narrowed_matrix

ENVS = ("tf115", "tf215-hub015")


def _harness(*argv, cwd):
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode in (0, 1), f"harness {' '.join(argv)}: exit {proc.returncode}\n" \
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _results(run_dir):
    with open(os.path.join(run_dir, "results.jsonl")) as fh:
        return {r["case_id"]: r for r in map(json.loads, fh)}


def _cells(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as fh:
        summary = json.load(fh)
    return summary, json.dumps(summary["cells"], sort_keys=True)


def test_sharded_run_merges_into_the_single_process_run(tmp_path):
    matrix = str(narrowed_matrix(tmp_path, ENVS))
    started = time.monotonic()
    single = _harness("run", "--matrix", matrix, "--run-id", "single", cwd=ROOT)
    single_s = time.monotonic() - started

    plan = json.loads(_harness("plan", "--json", "--matrix", matrix, cwd=ROOT).stdout)
    shards = tmp_path / "shards"
    started = time.monotonic()
    for job in plan["create"]["include"]:
        _harness("run", "--matrix", matrix, "--stage", "create", "--env", job["env"],
                 "--mode", job["mode"], "--run-id", "sharded",
                 "--out", str(shards / job["artifact"]), cwd=ROOT)
    stores = [str(shards / job["artifact"]) for job in plan["create"]["include"]]
    for job in plan["consume"]["include"]:
        _harness("run", "--matrix", matrix, "--stage", "consume", "--env", job["env"],
                 "--mode", job["mode"], "--run-id", "sharded", "--store", *stores,
                 "--out", str(shards / job["artifact"]), cwd=ROOT)
    merged_dir = tmp_path / "merged"
    merged = _harness("merge", *sorted(str(p) for p in shards.iterdir()), "--matrix", matrix,
                      "--out", str(merged_dir), cwd=ROOT)
    sharded_s = time.monotonic() - started
    print(f"single process {single_s:.0f}s, {len(stores)} create + {len(stores)} consume "
          f"shards one after another + merge {sharded_s:.0f}s")

    one = _results(tmp_path / "reports" / "single")
    many = _results(merged_dir)
    assert sorted(one) == sorted(many)
    assert len(one) > 500
    differ = {cid: (one[cid]["outcome"], many[cid]["outcome"]) for cid in one
              if one[cid]["outcome"] != many[cid]["outcome"]}
    assert not differ, differ
    assert merged.returncode == single.returncode
    one_summary, one_cells = _cells(tmp_path / "reports" / "single")
    many_summary, many_cells = _cells(merged_dir)
    assert one_cells == many_cells
    assert one_summary["totals"] == many_summary["totals"]
    assert many_summary["run"]["shards"] == {"planned": 8, "merged": 8, "failed": [],
                                             "missing": []}
    assert many_summary["run"]["complete"] is True
    # the env versions survive the merge
    for env_id in ENVS:
        assert many_summary["envs"][env_id]["versions"] == \
            one_summary["envs"][env_id]["versions"]
    # every stage wrote JUnit XML, which the merge keeps
    assert sorted(os.listdir(merged_dir / "junit")) == sorted(
        f"{stage}.{job['env']}.{job['mode']}.xml" for stage in ("create", "consume")
        for job in plan[stage]["include"])
