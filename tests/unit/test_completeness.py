"""Unfinished runs say so: which planned cases have no record (fake run directories, no
TensorFlow), the summary's run.complete / missing_cases and incomplete cells, the banner,
reports/latest kept, harness report's exit status, and the changes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import config, registry
from harness.expand import EnvRun, expand, stage_plan
from harness.report import diff, write_reports
from harness.report.completeness import check, planned_stage, write_run_file
from harness.runtime.cases import parse_case_id, plan_cases
from harness.runtime.records import make_record

CREATE_TF115 = "create.tf115.tf1"


@pytest.fixture
def matrix(default_matrix_path):
    return config.load(default_matrix_path)


def _runs(matrix):
    return {r.key: r for r in expand(matrix)}


def _planned(matrix, run_dir, run, stage="create", extra=None):
    plan = stage_plan(matrix, run, stage, "r", str(run_dir / "store"),
                      str(run_dir / "records"), None, extra)
    return plan, plan_cases(plan, registry.variants())


def _record(case, outcome="passed", **fields):
    rec = make_record(case, {"python": "3.7.16", "tensorflow": "1.15.5"}, run_id="r",
                      outcome=outcome, duration_s=0.1, repro=f"repro {case.case_id}")
    rec.update(fields)
    return rec


def _write_records(run_dir, name, records):
    path = run_dir / "records" / f"{name}.gw0.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")


def _collected(run_dir, prefix, cases):
    path = run_dir / "records" / f"{prefix}.collected.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([c.case_id for c in cases]))


def _plan_file(run_dir, plan):
    (run_dir / "plans").mkdir(parents=True, exist_ok=True)
    (run_dir / "plans" / f"{plan['prefix']}.json").write_text(json.dumps(plan))


def _run_json(run_dir, stages, **extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_file(str(run_dir), {"schema_version": 1, "run_id": "r", "stages": stages,
                                  "started_at": "2026-12-01T00:00:00Z", **extra})


@pytest.fixture
def killed(matrix, tmp_path):
    """A run killed during its create stages: tf115/tf1 collected its cases and recorded
    two, tf115/tf1_eager has a plan but never finished collecting, tf221-keras3/tf2 never
    started."""
    runs = _runs(matrix)
    run_dir = tmp_path / "reports" / "r"
    chosen = [runs["tf115/tf1"], runs["tf115/tf1_eager"], runs["tf221-keras3/tf2"]]
    _run_json(run_dir, [planned_stage("create", r, None) for r in chosen])
    _, first = _planned(matrix, run_dir, chosen[0])
    _collected(run_dir, CREATE_TF115, first)
    done = [_record(first[0]), _record(first[-1], "error", error_type="ValueError",
                                       message="no")]
    _write_records(run_dir, CREATE_TF115, done)
    plan, second = _planned(matrix, run_dir, chosen[1])
    _plan_file(run_dir, plan)
    _, third = _planned(matrix, run_dir, chosen[2])
    return run_dir, done, {"collected": first, "planned": second, "not_started": third}


def test_missing_cases_from_collected_plans_and_unstarted_stages(matrix, killed):
    run_dir, done, cases = killed
    state = check(str(run_dir), matrix)
    expected = {c.case_id for group in cases.values() for c in group} - \
        {r["case_id"] for r in done}
    assert set(state.missing) == expected
    assert not state.complete and not state.interrupted
    assert state.unfinished == [
        {"prefix": "create.tf115.tf1", "state": "collected", "planned": len(cases["collected"]),
         "missing": len(cases["collected"]) - 2},
        {"prefix": "create.tf115.tf1_eager", "state": "planned",
         "planned": len(cases["planned"]), "missing": len(cases["planned"])},
        {"prefix": "create.tf221-keras3.tf2", "state": "not_started",
         "planned": len(cases["not_started"]), "missing": len(cases["not_started"])}]
    # a missing case's model kind: the planned one (health checks have none)
    my_mul = next(c for c in cases["not_started"] if c.model == "my_mul")
    assert state.missing[my_mul.case_id] == "my_mul"
    health = next(c for c in cases["collected"][1:] if c.operation == "health")
    assert state.missing[health.case_id] == ""
    assert state.run_fields() == {"complete": False, "interrupted": False,
                                  "interrupted_by": None, "missing_cases": len(expected),
                                  "unfinished_stages": state.unfinished}


def _collected_create_stage(matrix, tmp_path):
    """A run dir whose one planned stage (tf115/tf1 create) collected its cases."""
    run = _runs(matrix)["tf115/tf1"]
    run_dir = tmp_path / "r"
    _run_json(run_dir, [planned_stage("create", run, None)])
    _, cases = _planned(matrix, run_dir, run)
    _collected(run_dir, CREATE_TF115, cases)
    return run, run_dir, cases


def test_a_finished_run_is_complete(matrix, tmp_path):
    _, run_dir, cases = _collected_create_stage(matrix, tmp_path)
    _write_records(run_dir, CREATE_TF115, [_record(c) for c in cases])
    state = check(str(run_dir), matrix)
    assert state.complete and state.missing == {} and state.unfinished == []


def test_unstarted_consume_stage_expands_the_store_with_url_cases(matrix, tmp_path):
    runs = _runs(matrix)
    run_dir = tmp_path / "r"
    _run_json(run_dir, [planned_stage("consume", runs["tf221-tfkeras/tf2"], None)])
    model = run_dir / "store" / "tf115" / "tf1" / "tf1_hub" / "mlp"
    model.mkdir(parents=True)
    (model / "manifest.json").write_text(json.dumps(
        {"format": "tf1_hub", "model": "mlp", "producer": {"env_id": "tf115", "mode": "tf1"},
         "spec": {"kind": "mlp"}}))
    state = check(str(run_dir), matrix)
    assert state.missing and all(parse_case_id(c).producer_env == "tf115"
                                 for c in state.missing)
    assert any(parse_case_id(c).api.endswith("-url") for c in state.missing)  # hub server
    assert state.unfinished[0]["state"] == "not_started"


def test_selected_cases_only(matrix, tmp_path):
    run = _runs(matrix)["tf115/tf1"]
    run_dir = tmp_path / "r"
    one = "tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp"
    _run_json(run_dir, [planned_stage("create", run, [one])])
    assert set(check(str(run_dir), matrix).missing) == {one}


def test_older_run_without_run_json_uses_its_plan_files(matrix, tmp_path):
    run_dir = tmp_path / "old"
    assert check(str(run_dir), matrix).complete  # nothing planned, nothing missing
    plan, cases = _planned(matrix, run_dir, _runs(matrix)["tf115/tf1"])
    _plan_file(run_dir, plan)
    _write_records(run_dir, CREATE_TF115, [_record(c) for c in cases[1:]])
    state = check(str(run_dir), matrix)
    assert set(state.missing) == {cases[0].case_id}


def test_interrupted_run_is_never_complete(matrix, tmp_path):
    run, run_dir, cases = _collected_create_stage(matrix, tmp_path)
    never = _record(cases[0], "crashed", error_type="ProcessCrashed",
                    message="the run was interrupted (SIGTERM) before this case ran; log x")
    _write_records(run_dir, CREATE_TF115, [never] + [_record(c) for c in cases[1:]])
    state = check(str(run_dir), matrix)
    assert state.interrupted and set(state.missing) == {cases[0].case_id}
    assert state.interrupted_by == "SIGTERM"
    # every case recorded, but the pipeline marked the run interrupted
    (run_dir / "records" / f"{CREATE_TF115}.gw0.jsonl").unlink()
    _write_records(run_dir, CREATE_TF115, [_record(c) for c in cases])
    _run_json(run_dir, [planned_stage("create", run, None)], interrupted=True,
              interrupted_by="SIGHUP")
    state = check(str(run_dir), matrix)
    assert state.missing == {} and state.interrupted and not state.complete
    assert state.interrupted_by == "SIGHUP"
    summary = write_reports(str(run_dir), [_record(c) for c in cases], matrix,
                            {"run_id": "r"}, {})
    assert "This run is incomplete: 0 planned cases have no record. It was interrupted " \
        "(SIGHUP)." in (run_dir / "compat.md").read_text()
    assert summary["run"]["complete"] is False


def _consume_killed(matrix, tmp_path):
    """tf221-tfkeras/tf2 consumed a tf115 SavedModel: 2 of its planned path cases and
    1 URL case recorded, the rest missing."""
    runs = _runs(matrix)
    run_dir = tmp_path / "reports" / "r"
    run = runs["tf221-tfkeras/tf2"]
    _run_json(run_dir, [planned_stage("consume", run, None)])
    model = run_dir / "store" / "tf115" / "tf1" / "saved_model" / "mlp"
    model.mkdir(parents=True)
    (model / "manifest.json").write_text(json.dumps(
        {"format": "saved_model", "model": "mlp", "producer": {"env_id": "tf115", "mode": "tf1"},
         "spec": {"kind": "mlp"}}))
    plan, cases = _planned(matrix, run_dir, run, "consume", {"hub_url": "http://h/"})
    _plan_file(run_dir, plan)
    _collected(run_dir, run.prefix("consume"), cases)
    loads = [c for c in cases if c.operation == "load" and c.via == "path"]
    urls = [c for c in cases if c.operation == "load" and c.via == "url"]
    done = [_record(loads[0]), _record(loads[1], "error", error_type="ValueError",
                                       message="boom"), _record(urls[0])]
    _write_records(run_dir, run.prefix("consume"), done)
    return run_dir, cases, loads, urls, done


def test_report_of_an_unfinished_run(matrix, tmp_path):
    run_dir, cases, loads, urls, done = _consume_killed(matrix, tmp_path)
    latest = tmp_path / "reports" / "latest"
    latest.mkdir()
    (latest / "RUN").write_text("previous\n")
    summary = write_reports(str(run_dir), done, matrix, {"run_id": "r"}, {})
    run = summary["run"]
    assert run["complete"] is False and run["missing_cases"] == len(cases) - 3
    assert run["unfinished_stages"] == [{"prefix": "consume.tf221-tfkeras.tf2",
                                         "state": "collected", "planned": len(cases),
                                         "missing": len(cases) - 3}]
    cell = {(c["format"], c["operation"], c["column"]): c for c in summary["cells"]}
    load = cell[("saved_model", "load", "tf2")]
    assert (load["all_calls"]["passed"], load["all_calls"]["attempted"], load["incomplete"]) \
        == (1, 2, True)
    assert load["missing"] == len(loads) - 2
    assert load["by_handle"]["incomplete"] and load["by_handle"]["missing"] == len(urls) - 1
    assert cell[("saved_model", "fine_tune", "tf2")]["incomplete"]
    nothing = cell[("tf1_hub", "load", "tf2")]  # nothing planned there: not incomplete
    assert (nothing["incomplete"], nothing["missing"]) == (False, 0)
    env = {(c["env_id"], c["mode"], c["format"], c["operation"]): c
           for c in summary["env_cells"]}
    assert env[("tf221-tfkeras", "tf2", "saved_model", "fine_tune")]["missing"] > 0
    assert env[("tf221-tfkeras", "tf2", "saved_model", "fine_tune")]["attempted"] == 0
    md = (run_dir / "compat.md").read_text()
    banner = md.splitlines()[2]
    assert banner.startswith("> **⚠ This run is incomplete: ") and \
        f"{run['missing_cases']} planned cases have no record" in banner
    assert "consume.tf221-tfkeras.tf2" in banner
    assert f"1/2 incomplete ({load['missing']} missing)" in md
    assert "incomplete: no verdict yet" in md
    page = (run_dir / "index.html").read_text()
    assert 'data-testid="banner-incomplete"' in page
    assert f"incomplete ({load['missing']} missing)" in page
    assert "incomplete: no verdict yet" in page
    # an unfinished run never replaces the last complete one
    assert sorted(os.listdir(latest)) == ["RUN"]
    assert (latest / "RUN").read_text() == "previous\n"


def test_harness_report_on_an_unfinished_run_exits_1(matrix, default_matrix_path, tmp_path):
    run_dir, cases, *_ = _consume_killed(matrix, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--matrix",
                           default_matrix_path, str(run_dir)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: run r: the run is incomplete: {len(cases) - 3} "
                                  "planned cases have no record")
    assert proc.stderr.rstrip().endswith("reports/latest not replaced")
    assert (run_dir / "summary.json").exists() and (run_dir / "index.html").exists()
    assert not (tmp_path / "reports" / "latest").exists()


def test_changes_of_an_incomplete_cell_are_not_regressions():
    before = [{"format": "saved_model", "operation": "load", "column": "tf2",
               "observed": "supported", "passed": 5, "attempted": 5}]
    after = [dict(before[0], observed="partial", passed=1, attempted=2, incomplete=True,
                  missing=3)]
    cells = diff.diff_cells(before, after)
    assert [c["change"] for c in cells] == ["incomplete"]
    base = [{"case_id": "a", "outcome": "passed"}, {"case_id": "b", "outcome": "passed"},
            {"case_id": "c", "outcome": "passed"}]
    groups = diff.diff_cases(base, [base[0]], missing={"b"})
    assert [c["case_id"] for c in groups["missing"]] == ["b"]
    assert [c["case_id"] for c in groups["vanished"]] == ["c"]
    changes = diff.changes({"cells": after}, [base[0]], {"cells": before, "run": {}}, base,
                           "x/summary.json", missing={"b", "c"})
    assert changes["counts"]["cell_regressions"] == 0
    assert changes["counts"]["cell_incomplete"] == 1 and changes["counts"]["missing"] == 2
    assert diff.regressions(changes) == (0, 0)


def test_an_incomplete_run_is_no_baseline(tmp_path):
    reports = tmp_path / "reports"
    for name, started, complete in (("a", "2026-01-01", True), ("b", "2026-01-02", False)):
        (reports / name).mkdir(parents=True)
        (reports / name / "summary.json").write_text(json.dumps(
            {"run": {"run_id": name, "started_at": started, "complete": complete},
             "cells": [], "envs": {}}))
    found = diff.resolve_baseline("last", str(reports / "c"), str(reports), "2026-01-03")
    assert found == str(reports / "a" / "summary.json")


def test_run_json_is_written_at_the_start(matrix, tmp_path):
    import dataclasses

    from harness import pipeline
    matrix = dataclasses.replace(matrix, settings=dataclasses.replace(
        matrix.settings, reports_dir=str(tmp_path)))
    selection = pipeline.select(matrix, pipeline.Options(envs=("tf115",)))
    pipeline.start(matrix, selection, pipeline.Options(run_id="x"))
    text = (tmp_path / "x" / "run.json").read_text()
    data = json.loads(text, parse_constant=_refuse)
    assert data["run_id"] == "x" and data["matrix"] == matrix.path and data["started_at"]
    assert [s["prefix"] for s in data["stages"]] == [
        "create.tf115.tf1", "create.tf115.tf1_eager", "consume.tf115.tf1",
        "consume.tf115.tf1_eager"]
    assert data["stages"][0] == {"stage": "create", "env_id": "tf115", "mode": "tf1",
                                 "prefix": "create.tf115.tf1", "select": None}
    assert [m["name"] for m in data["models"]] == ["mlp", "my_mul"]
    assert data["interrupted"] is False
    run_env = EnvRun(matrix.env("tf115"), "tf1")
    assert data["stages"][0]["prefix"] == stage_plan(matrix, run_env, "create", "x", "s",
                                                     "r")["prefix"]


def _refuse(token):
    raise ValueError(f"not JSON: {token}")


def test_stages_of_merged_shards_count_by_their_plans(matrix, tmp_path):
    """Two CI jobs' run directories merged: one job's run.json is kept; the other job's
    stages are known by their plan files."""
    runs = _runs(matrix)
    run_dir = tmp_path / "r"
    _run_json(run_dir, [planned_stage("create", runs["tf115/tf1"], None)])
    _, mine = _planned(matrix, run_dir, runs["tf115/tf1"])
    _collected(run_dir, CREATE_TF115, mine)
    _write_records(run_dir, CREATE_TF115, [_record(c) for c in mine])
    plan, other = _planned(matrix, run_dir, runs["tf115/tf1_eager"])
    _plan_file(run_dir, plan)
    _collected(run_dir, plan["prefix"], other)
    _write_records(run_dir, plan["prefix"], [_record(c) for c in other[1:]])
    state = check(str(run_dir), matrix)
    assert set(state.missing) == {other[0].case_id}
    assert [s["prefix"] for s in state.unfinished] == ["create.tf115.tf1_eager"]
