"""harness merge over fake shard directories (no TensorFlow): missing and unfinished shards
become crashed records that name them, summary.json says which shards failed, bad input
is one line; harness plan --json is what the workflow's matrices take; the --stage flags."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import config, registry
from harness.cli import main
from harness.errors import UserError
from harness.expand import ci_plan, expand, stage_plan
from harness.merge import merge
from harness.report.completeness import planned_stage, write_run_file
from harness.runtime.cases import plan_cases
from harness.runtime.records import make_record

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def matrix_path(tmp_path):
    """The default matrix narrowed to tf115 (its two modes), reports in tmp_path."""
    import yaml
    with open(os.path.join(ROOT, "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(envs_dir=os.path.join(ROOT, ".envs"),
                           reports_dir=str(tmp_path / "reports"))
    for model in raw["models"]:
        model["definition"] = os.path.join(ROOT, model["definition"])
    raw["envs"] = [e for e in raw["envs"] if e["id"] == "tf115"]
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _shard(matrix, root, key, stage, drop=0, interrupted=False):
    """A shard directory as `harness run --stage` leaves it: run.json, envs.json, its plan,
    collected ids and records (all passed; the last ``drop`` cases unrecorded)."""
    run = {r.key: r for r in expand(matrix)}[key]
    root.mkdir(parents=True)
    write_run_file(str(root), {"schema_version": 1, "run_id": "nightly-1",
                               "started_at": "2026-12-01T00:00:00Z",
                               "interrupted": interrupted, "repro": "repro {case_id}",
                               "stages": [planned_stage(stage, run, None)]})
    (root / "envs.json").write_text(json.dumps({"tf115": {
        "python": "3.7", "provisioned": "reused",
        "versions": {"python": "3.7.16", "tensorflow": "1.15.5"}}}))
    plan = stage_plan(matrix, run, stage, "nightly-1", str(root / "store"),
                      str(root / "records"))
    cases = plan_cases(plan, registry.variants())
    (root / "plans").mkdir()
    (root / "plans" / f"{plan['prefix']}.json").write_text(json.dumps(plan))
    (root / "records").mkdir()
    (root / "records" / f"{plan['prefix']}.collected.json").write_text(
        json.dumps([c.case_id for c in cases]))
    with open(root / "records" / f"{plan['prefix']}.gw0.jsonl", "w") as fh:
        for case in cases[:len(cases) - drop]:
            rec = make_record(case, {"python": "3.7.16", "tensorflow": "1.15.5"},
                              run_id="nightly-1", outcome="passed", duration_s=0.1,
                              repro="r")
            fh.write(json.dumps(rec) + "\n")
    (root / "junit").mkdir()
    (root / "junit" / f"{plan['prefix']}.xml").write_text("<testsuites/>")
    return [c.case_id for c in cases]


def _records(run_dir):
    with open(os.path.join(run_dir, "results.jsonl")) as fh:
        return {r["case_id"]: r for r in map(json.loads, fh)}


def test_missing_and_unfinished_shards_become_crashed_records(matrix_path, tmp_path):
    matrix = config.load(matrix_path)
    shards = tmp_path / "shards"
    cut = _shard(matrix, shards / "create-tf115-tf1", "tf115/tf1", "create", drop=2,
                 interrupted=True)
    # create-tf115-tf1_eager's job never uploaded; no consume shard ran either
    out = tmp_path / "merged"
    status = merge([str(shards / "create-tf115-tf1")], str(out), matrix_path, baseline=None)
    assert status == 1  # crashed records are infrastructure failures
    records = _records(out)
    assert all(records[cid]["outcome"] == "passed" for cid in cut[:-2])
    for cid in cut[-2:]:
        assert records[cid]["outcome"] == "crashed"
        assert records[cid]["error_type"] == "ShardIncomplete"
        assert "shard create-tf115-tf1 ran stage create.tf115.tf1" in records[cid]["message"]
    missing = [r for r in records.values() if r["error_type"] == "ShardMissing"]
    assert len(missing) == len(cut)  # tf1_eager plans as many create cases
    assert {(r["stage"], r["mode"]) for r in missing} == {("create", "tf1_eager")}
    assert all("job create-tf115-tf1_eager failed before uploading" in r["message"]
               for r in missing)
    with open(out / "summary.json") as fh:
        summary = json.load(fh)
    assert summary["run"]["shards"] == {
        "planned": 4, "merged": 1, "failed": ["create-tf115-tf1"],
        "missing": ["create-tf115-tf1_eager", "consume-tf115-tf1", "consume-tf115-tf1_eager"]}
    assert summary["run"]["complete"] is True  # every planned case has a record now
    assert "Failed (cut short): create-tf115-tf1. Missing (no output): create-tf115-tf1_eager" \
        in (out / "compat.md").read_text()
    assert 'data-testid="banner-shards"' in (out / "index.html").read_text()
    assert summary["run"]["run_id"] == "nightly-1"  # the shards' common run id
    assert summary["envs"]["tf115"]["versions"]["tensorflow"] == "1.15.5"
    assert os.listdir(out / "junit") == ["create.tf115.tf1.xml"]
    with open(out / "run.json") as fh:
        run = json.load(fh)
    assert [s["prefix"] for s in run["stages"]] == [
        "create.tf115.tf1", "create.tf115.tf1_eager", "consume.tf115.tf1",
        "consume.tf115.tf1_eager"]
    assert not os.path.exists(tmp_path / "latest")  # --out outside reports/: left alone
    # harness report over the merged records alone keeps the env versions (envs.json)
    os.remove(out / "summary.json")
    assert main(["report", str(out), "--matrix", matrix_path]) == 1
    with open(out / "summary.json") as fh:
        assert json.load(fh)["envs"]["tf115"]["versions"]["tensorflow"] == "1.15.5"


def test_bad_shard_directories_are_one_line(matrix_path, tmp_path):
    matrix = config.load(matrix_path)
    shard = tmp_path / "create-tf115-tf1"
    _shard(matrix, shard, "tf115/tf1", "create")
    with pytest.raises(UserError, match="also run by shard create-tf115-tf1; give each"):
        merge([str(shard), str(shard)], str(tmp_path / "m1"), matrix_path, baseline=None)
    with pytest.raises(UserError, match="not a shard's directory"):
        merge([str(tmp_path)], str(tmp_path / "m2"), matrix_path, baseline=None)
    other = tmp_path / "other.yaml"
    other.write_text(Path(matrix_path).read_text().replace("id: tf115", "id: tf115b"))
    with pytest.raises(UserError, match="does not plan; merge with the matrix"):
        merge([str(shard)], str(tmp_path / "m3"), str(other), baseline=None)


def test_plan_json_is_two_job_matrices(matrix_path, tmp_path, capsys):
    out = tmp_path / "github_output"
    assert main(["plan", "--json", "--matrix", matrix_path, "--github-output", str(out)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["jobs"] == {"create": 2, "consume": 2}
    assert plan["create"]["include"][0] == {
        "env": "tf115", "mode": "tf1", "python": "3.7", "name": "create tf115/tf1",
        "artifact": "create-tf115-tf1"}
    assert [j["artifact"] for j in plan["consume"]["include"]] == [
        "consume-tf115-tf1", "consume-tf115-tf1_eager"]
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert json.loads(lines["create"]) == plan["create"]
    assert lines["matrix"] == matrix_path
    default = ci_plan(config.load(os.path.join(ROOT, "matrix.yaml")), "matrix.yaml")
    assert default["jobs"] == {"create": 11, "consume": 11}


@pytest.mark.parametrize("argv, message", [
    (["--stage", "create"], "--stage create needs --out DIR"),
    (["--out", "x"], "--out is for one shard: add --stage"),
    (["--stage", "consume", "--out", "x"], "--stage consume needs --store DIR"),
    (["--stage", "create", "--out", "x", "--store", "y"], "--store is for --stage consume"),
    (["--stage", "create", "--out", "x", "--case", "a/b"], "drop --case"),
    (["--stage", "consume", "--out", "x", "--store", "nowhere"],
     "/nowhere: not a shard's directory"),
])
def test_stage_flags_are_one_line_errors(matrix_path, tmp_path, argv, message):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--matrix", matrix_path,
                           *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
