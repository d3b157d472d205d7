"""Stage runner logic with a fake backend: every planned case ends with one record.

The fake "interpreter" is a script standing in for a TF environment's python:
it records some cases and then dies or hangs, as a real worker can.
"""
import dataclasses
import json
import os
import stat
import sys

import pytest

from harness import config, registry
from harness.backends import Provisioned, ProvisionError
from harness.expand import expand, stage_plan
from harness.runtime.cases import plan_cases
from harness.stages import RunPaths, read_records, run_stage

FAKE = """#!{python}
import json, sys, time
from harness import registry
from harness.runtime.cases import plan_cases
from harness.runtime.records import RecordWriter, make_record
plan = json.load(open([a for a in sys.argv if a.startswith("--tfhub-plan=")][0].split("=", 1)[1]))
cases = plan_cases(plan, registry.variants())
json.dump([c.case_id for c in cases],
          open(plan["results_dir"] + "/" + plan["prefix"] + ".collected.json", "w"))
RecordWriter(plan["results_dir"] + "/" + plan["prefix"] + ".gw0.jsonl").write(
    make_record(cases[0], {{}}, outcome="passed", run_id=plan["run_id"]))
print("worker 'gw1' crashed while running " + cases[1].case_id, flush=True)
{ending}
"""


def fake_env(tmp_path, ending):
    script = tmp_path / "python"
    script.write_text(FAKE.format(python=sys.executable, ending=ending))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return Provisioned("tf115", str(script), str(tmp_path), False, 0.0, {"python": "3.7.16"})


@pytest.fixture
def setup(default_matrix_path, tmp_path):
    matrix = config.load(default_matrix_path)
    matrix = dataclasses.replace(matrix, settings=dataclasses.replace(
        matrix.settings, stage_timeout_s=3))
    run = expand(matrix, ("tf115",))[0]
    return matrix, run, RunPaths(str(tmp_path / "run"))


def planned(matrix, run, tmp_path):
    plan = stage_plan(matrix, run, "create", "r1", str(tmp_path), str(tmp_path))
    return len(plan_cases(plan, registry.variants()))


def test_dead_worker_becomes_crashed_records(setup, tmp_path):
    matrix, run, paths = setup
    result = run_stage(matrix, run, "create", fake_env(tmp_path, "sys.exit(1)"), paths, "r1")
    records = {r["case_id"]: r for r in read_records(paths.records)}
    assert result.counts == {"passed": 1, "crashed": planned(matrix, run, tmp_path) - 1}
    crashed = records["tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp"]
    assert crashed["outcome"] == "crashed" and crashed["error_type"] == "ProcessCrashed"
    assert "pytest exited with 1" in crashed["message"]
    assert "worker 'gw1' crashed" in crashed["message"]  # the log tail travels with it
    assert crashed["repro"] == ("nox -s matrix -- --case "
                                "tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp")


def test_hung_stage_becomes_timeout_records_and_keeps_measured(setup, tmp_path):
    matrix, run, paths = setup
    result = run_stage(matrix, run, "create", fake_env(tmp_path, "time.sleep(60)"), paths, "r1")
    assert result.counts == {"passed": 1, "timeout": planned(matrix, run, tmp_path) - 1}
    assert result.seconds < 30


def test_unprovisioned_env_becomes_env_error_records(setup):
    matrix, run, paths = setup
    result = run_stage(matrix, run, "create", ProvisionError("uv pip install failed: nope"),
                       paths, "r1")
    records = read_records(paths.records)
    assert result.counts == {"env_error": planned(matrix, run, paths.root)}
    assert {r["error_type"] for r in records} == {"ProvisionError"}
    assert all("uv pip install failed: nope" in r["message"] for r in records)
    assert os.path.exists(os.path.join(paths.root, "plans", "create.tf115.tf1.json"))


def test_read_records_prefix_is_a_whole_name_part(tmp_path):
    from harness.runtime.records import RecordWriter
    for prefix in ("create.tf115.tf1", "create.tf115.tf1_eager", "consume.tf115.tf1"):
        RecordWriter(str(tmp_path / f"{prefix}.gw0.jsonl")).write({"case_id": prefix})
    assert [r["case_id"] for r in read_records(str(tmp_path), "create.tf115.tf1")] == [
        "create.tf115.tf1"]
    assert len(read_records(str(tmp_path), "create")) == 2
    assert len(read_records(str(tmp_path))) == 3


def test_facts_of_each_env_and_mode_are_read_back(tmp_path):
    from harness.stages import read_facts
    facts = {"env_id": "tf221-keras3", "mode": "tf2", "keras": "keras 3.15.0",
             "tf_keras_layer": "keras.src.layers.layer.Layer",
             "hub_keras_layer_base": "tf_keras.src.engine.base_layer.Layer"}
    (tmp_path / "create.tf221-keras3.tf2.facts.gw0.json").write_text(json.dumps(facts))
    (tmp_path / "create.tf115.tf1.facts.gw0.json").write_text('{"env_id": "tf1')  # cut
    found = read_facts(str(tmp_path))
    assert list(found) == ["tf221-keras3"]
    assert found["tf221-keras3"]["tf2"]["hub_keras_layer_base"].startswith("tf_keras.")
    assert "env_id" not in found["tf221-keras3"]["tf2"]


# A stage process that runs its plan's cases as the plugin does (a marker while each runs,
# then its record): the case named by $HANG never returns, the one named by $DIE kills
# its process.
CASES = """#!{python}
import json, os, signal, sys, time
from harness import registry
from harness.runtime.cases import plan_cases
from harness.runtime.records import RecordWriter, make_record, write_json
plan = json.load(open([a for a in sys.argv if a.startswith("--tfhub-plan=")][0].split("=", 1)[1]))
out = plan["results_dir"] + "/" + plan["prefix"]
writer = RecordWriter(out + ".main.jsonl")
for case in plan_cases(plan, registry.variants()):
    write_json(out + ".main.running.json", {{"case_id": case.case_id, "pid": os.getpid(),
                                            "worker": "main", "started_at": time.time()}})
    if case.case_id == os.environ.get("HANG"):
        time.sleep(600)
    if case.case_id == os.environ.get("DIE"):
        os.kill(os.getpid(), signal.SIGKILL)
    writer.write(make_record(case, {{}}, outcome="passed", run_id=plan["run_id"]))
    os.remove(out + ".main.running.json")
"""
HANG = "tf115/tf1/saved_model/create/MyMulModel/my_mul"  # in the middle of the stage


def cases_env(tmp_path, monkeypatch, **env):
    script = tmp_path / "python"
    script.write_text(CASES.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Provisioned("tf115", str(script), str(tmp_path), False, 0.0, {"python": "3.7.16"})


@pytest.fixture
def watched(setup):
    matrix, run, paths = setup
    return dataclasses.replace(matrix, settings=dataclasses.replace(
        matrix.settings, stage_timeout_s=60, case_timeout_s=2)), run, paths


def test_a_hanging_case_is_killed_and_recorded_alone(watched, tmp_path, monkeypatch):
    matrix, run, paths = watched
    result = run_stage(matrix, run, "create", cases_env(tmp_path, monkeypatch, HANG=HANG),
                       paths, "r1")
    records = {r["case_id"]: r for r in read_records(paths.records)}
    assert result.counts == {"passed": planned(matrix, run, tmp_path) - 1, "timeout": 1}
    hung = records[HANG]
    assert hung["error_type"] == "CaseTimeout" and 2 <= hung["duration_s"] < 10
    assert "longer than case_timeout_s (2s)" in hung["message"]
    assert "worker main" in hung["message"]
    assert not os.listdir(os.path.join(paths.root, "tmp", "create.tf115.tf1")) \
        if os.path.exists(os.path.join(paths.root, "tmp", "create.tf115.tf1")) else True
    with open(os.path.join(paths.root, "logs", "create.tf115.tf1.log")) as fh:
        assert "starting it again for them" in fh.read()  # the main was the process killed


def test_a_case_that_kills_its_process_is_crashed_alone(watched, tmp_path, monkeypatch):
    matrix, run, paths = watched
    result = run_stage(matrix, run, "create", cases_env(tmp_path, monkeypatch, DIE=HANG),
                       paths, "r1")
    records = {r["case_id"]: r for r in read_records(paths.records)}
    assert result.counts == {"passed": planned(matrix, run, tmp_path) - 1, "crashed": 1}
    assert "died while it ran" in records[HANG]["message"]


def test_a_stage_run_again_runs_only_what_has_no_record(watched, tmp_path, monkeypatch):
    matrix, run, paths = watched
    first = run_stage(matrix, run, "create", cases_env(tmp_path, monkeypatch, DIE=HANG),
                      paths, "r1")
    crashed = {r["case_id"] for r in read_records(paths.records) if r["outcome"] == "crashed"}
    with open(os.path.join(paths.records, "create.tf115.tf1.main.jsonl"), "a") as fh:
        fh.write('{"case_id": "cut by a ki')  # a line cut by a killed process
    again = run_stage(matrix, run, "create", cases_env(tmp_path, monkeypatch), paths, "r1")
    assert again.counts == first.counts and crashed == {HANG}  # nothing ran twice
    assert again.returncode is None  # no process was started
    ids = [r["case_id"] for r in read_records(paths.records)]
    assert len(ids) == len(set(ids)) == planned(matrix, run, tmp_path)


def test_an_env_id_with_dots_is_never_another_stage(tmp_path):
    from harness.runtime.records import RecordWriter
    for prefix in ("create.x.tf2", "create.x.tf2.compat"):  # env x / tf2 and env x.tf2 / compat
        RecordWriter(str(tmp_path / f"{prefix}.gw0.jsonl")).write({"case_id": prefix})
    assert [r["case_id"] for r in read_records(str(tmp_path), "create.x.tf2")] == [
        "create.x.tf2"]
    assert len(read_records(str(tmp_path), "create")) == 2
