"""Changes between runs (cells and cases), the history of runs, ``harness report --baseline``.

The records and summaries under resources/diff/ are subsets of two real runs of the
default matrix (full4 and full5): between them, the 10 fault cases of
tf215-hub015-setuptools82 went from failed to error (hub there cannot import
pkg_resources) and nothing else changed.
"""
import copy
import functools
import json
import os

import pytest

from harness.cli import main
from harness.errors import UserError
from harness.report import diff, history
from harness.report.markdown import changes_markdown, history_markdown, render

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIFF = os.path.join(RESOURCES, "diff")
SETUPTOOLS82 = "tf215-hub015-setuptools82/tf2/"


def _records(name):
    with open(os.path.join(DIFF, f"{name}.records.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def _summary(name):
    with open(os.path.join(DIFF, f"{name}.summary.json")) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=1)
def _default_matrix():
    from harness import config
    return config.load(os.path.join(ROOT, "matrix.yaml"))


def _counted(rec):
    """The record counts in its documents' cell's level (the calls the default matrix's
    expectation names)."""
    exp = _default_matrix().expectation(
        rec["format"], rec["operation"], rec["column"])
    return exp is not None and rec["api"] in exp.calls


def _regressed(records):
    """The records with one passed load case of a supported cell turned into an error."""
    records = copy.deepcopy(records)

    def cell(rec):
        return rec["format"], rec["operation"], rec["column"], rec.get("via")

    loads = [r for r in records if r["operation"] == "load" and _counted(r)]
    bad = {cell(r) for r in loads if r["outcome"] != "passed"}
    victim = next(r for r in loads if r["outcome"] == "passed" and r.get("via") == "path"
                  and cell(r) not in bad)  # a supported cell
    victim.update(outcome="error", error_type="ValueError", message="synthetic\nsecond line")
    return records, victim["case_id"]


def test_real_runs_differ_in_exactly_the_setuptools82_faults():
    cases = diff.diff_cases(_records("full4"), _records("full5"))
    changed = cases["changed"]
    assert len(changed) == 10
    assert all(c["case_id"].startswith(SETUPTOOLS82) and "/download/fault-" in c["case_id"]
               for c in changed)
    assert {(c["before"], c["after"], c["error_type"]) for c in changed} == {
        ("failed", "error", "ModuleNotFoundError")}
    assert changed[0]["message"] == "No module named 'pkg_resources'"
    assert changed[0]["repro"] == f"nox -s matrix -- --case {changed[0]['case_id']}"
    assert [c["case_id"] for c in changed] == sorted(c["case_id"] for c in changed)
    assert not any(cases[g] for g in ("regressions", "fixes", "new", "vanished"))
    # the documents' cells did not move (download cases are not in the documents' table)
    assert diff.diff_cells(_summary("full4")["cells"], _summary("full5")["cells"]) == []


def test_synthetic_regression_is_listed_first():
    after, victim = _regressed(_records("full5"))
    changes = diff.changes(_summary("full5"), after, _summary("full4"), _records("full4"),
                           "reports/full4/summary.json")
    assert list(changes["cases"]) == ["regressions", "fixes", "changed", "new", "vanished",
                                      "missing"]
    assert changes["cases"]["regressions"] == [{
        "case_id": victim, "before": "passed", "after": "error", "error_type": "ValueError",
        "message": "synthetic", "repro": f"nox -s matrix -- --case {victim}"}]
    assert changes["counts"] == {"cell_regressions": 0, "cell_fixes": 0, "cell_incomplete": 0,
                                 "regressions": 1, "fixes": 0, "changed": 10, "new": 0,
                                 "vanished": 0, "missing": 0}
    assert changes["baseline"] == {"run_id": "full4", "path": "reports/full4/summary.json",
                                   "case_level": True}
    md = changes_markdown(changes)
    first = next(i for i, line in enumerate(md) if line.startswith("- `"))
    assert md[first].startswith(f"- `{victim}`: passed → error `ValueError`: synthetic")
    assert md.index("**Regressions** (passed → failed/error): 1") < \
        md.index("Other outcome changes: 10")


def test_case_groups_and_fixes_show_the_old_error():
    before = [{"case_id": "a", "outcome": "passed"}, {"case_id": "b", "outcome": "error",
                                                       "error_type": "E", "message": "old"},
              {"case_id": "c", "outcome": "passed"}, {"case_id": "d", "outcome": "failed"},
              {"case_id": "gone", "outcome": "passed"}]
    after = [{"case_id": "a", "outcome": "crashed"}, {"case_id": "b", "outcome": "passed"},
             {"case_id": "c", "outcome": "passed"}, {"case_id": "d", "outcome": "error"},
             {"case_id": "z", "outcome": "skipped"}]
    cases = diff.diff_cases(before, after)
    assert [(c["case_id"], c["before"], c["after"]) for c in cases["changed"]] == [
        ("a", "passed", "crashed"), ("d", "failed", "error")]
    assert cases["fixes"][0]["message"] == "old" and cases["fixes"][0]["after"] == "passed"
    assert [c["case_id"] for c in cases["new"]] == ["z"]
    assert [(c["case_id"], c["after"]) for c in cases["vanished"]] == [("gone", None)]


def _cell(fmt, op, col, observed, passed, attempted):
    return {"format": fmt, "operation": op, "column": col, "observed": observed,
            "passed": passed, "attempted": attempted}


def test_cell_changes_regressions_first_unknown_is_changed():
    before = [_cell("tf1_hub", "load", "tf2", "partial", 3, 6),
              _cell("saved_model", "load", "tf2", "supported", 4, 4),
              _cell("saved_model", "fine_tune", "tf1", "unsupported", 0, 2),
              _cell("saved_model", "create", "tf2", "supported", 2, 2),
              _cell("keras_saved_model", "load", "tf1", "partial", 1, 3),
              _cell("tf1_hub", "create", "tf1", "supported", 1, 1)]
    after = [_cell("tf1_hub", "load", "tf2", "supported", 6, 6),
             _cell("saved_model", "load", "tf2", "partial", 3, 4),
             _cell("saved_model", "fine_tune", "tf1", "unknown", 0, 0),
             _cell("saved_model", "create", "tf2", "supported", 2, 2),
             _cell("keras_saved_model", "load", "tf1", "partial", 2, 3)]
    cells = diff.diff_cells(before, after)
    assert [(c["format"], c["operation"], c["column"], c["change"]) for c in cells] == [
        ("saved_model", "load", "tf2", "regression"),
        ("tf1_hub", "load", "tf2", "fix"),
        ("tf1_hub", "create", "tf1", "changed"),          # gone: supported -> unknown
        ("saved_model", "fine_tune", "tf1", "changed"),   # unsupported -> unknown
        ("keras_saved_model", "load", "tf1", "changed")]  # partial 1/3 -> partial 2/3
    assert cells[0]["before_count"] == "4/4" and cells[0]["after_count"] == "3/4"
    assert cells[2]["after"] == "unknown" and cells[2]["after_count"] == "0/0"
    assert diff.change_of("unsupported", "partial") == "fix"
    assert diff.change_of("supported", "unsupported") == "regression"
    assert diff.change_of("unknown", "supported") == "changed"


def test_case_lists_are_capped_in_markdown():
    after = [{"case_id": f"c{i:02d}", "outcome": "error", "error_type": "E", "message": "m"}
             for i in range(25)]
    before = [dict(r, outcome="passed") for r in after]
    changes = diff.changes({"cells": []}, after, {"cells": [], "run": {"run_id": "old"}},
                           before, "old/summary.json")
    md = changes_markdown(changes)
    assert sum(line.startswith("- `c") for line in md) == 20
    assert "- … and 5 more (summary.json: changes)" in md
    cell_only = diff.changes({"cells": []}, after, {"cells": [], "run": {"run_id": "old"}},
                             None, "old/summary.json")
    assert cell_only["counts"]["regressions"] == 0
    assert not cell_only["baseline"]["case_level"]
    assert any("Cell level only" in line for line in changes_markdown(cell_only))


def _golden_changes():
    before, after = _summary("full4"), copy.deepcopy(_summary("full5"))
    cells = {history.cell_key(c): c for c in after["cells"]}
    cells["tf1_hub/load/tf1"].update(observed="unsupported", passed=0)        # regression
    cells["keras_saved_model/create/tf1"].update(observed="partial", passed=2)  # fix
    cells["saved_model/load/tf2"].update(passed=74)                            # same level
    cells["tf1_hub/fine_tune/tf2"].update(observed="unknown", passed=0, attempted=0)
    records, _ = _regressed(_records("full5"))
    changes = diff.changes(after, records, before, _records("full4"), "reports/full4")
    current = copy.deepcopy(after)
    current["run"] = {"run_id": "now", "started_at": "2026-11-22T00:00:00Z"}
    current["env_cells"] = [c for c in current["env_cells"] if c["env_id"] != "tf115"]
    hist = history.history([_summary("full4"), _summary("full5"), current])
    return changes, hist


def test_changes_and_history_markdown_golden():
    changes, hist = _golden_changes()
    text = "\n".join(changes_markdown(changes) + history_markdown(hist))
    path = os.path.join(RESOURCES, "changes.golden.md")
    if os.environ.get("UPDATE_GOLDEN"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read()
    summary = {"run": {"run_id": "now"}, "totals": {"cases": 0, "outcomes": {}}, "envs": {},
               "cells": [], "env_cells": [], "changes": changes, "history": hist}
    md = render(summary)
    assert md.index("## Changes since run full4") < md.index("## History (3 runs")
    assert history_markdown({"runs": [{"run_id": "only"}], "cells": {}, "env_passed": {}}) == []


# --- history ---------------------------------------------------------------------------

def _write_summary(path, run_id, started_at, cells=(), env_cells=()):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "summary.json"), "w") as fh:
        json.dump({"run": {"run_id": run_id, "started_at": started_at, "git_commit": "c" + run_id},
                   "cells": list(cells), "env_cells": list(env_cells)}, fh)


def test_history_orders_runs_by_start_and_skips_latest_broken_and_later(tmp_path):
    reports = tmp_path / "reports"
    load = _cell("tf1_hub", "load", "tf1", "supported", 1, 1)
    env = {"env_id": "tf115", "mode": "tf1", "passed": 1, "attempted": 2}
    _write_summary(reports / "b", "b", "2026-01-01T00:00:00Z", [load], [env, env])
    _write_summary(reports / "a", "a", "2026-01-02T00:00:00Z")
    _write_summary(reports / "latest", "a", "2026-01-02T00:00:00Z")
    _write_summary(reports / "future", "future", "2026-02-01T00:00:00Z")
    _write_summary(reports / "nostart", "nostart", "")
    (reports / "broken").mkdir()
    (reports / "broken" / "summary.json").write_text("{not json")
    (reports / "norun").mkdir()
    current = {"run": {"run_id": "cur", "started_at": "2026-01-03T00:00:00Z"},
               "cells": [dict(load, observed="partial")], "env_cells": []}
    hist = history.collect(str(reports), str(reports / "cur"), current)
    assert [r["run_id"] for r in hist["runs"]] == ["b", "a", "cur"]
    assert hist["runs"][0] == {"run_id": "b", "started_at": "2026-01-01T00:00:00Z",
                               "git_commit": "cb"}
    assert hist["cells"] == {"tf1_hub/load/tf1": ["supported", None, "partial"]}
    assert hist["env_passed"] == {"tf115/tf1": [{"passed": 2, "attempted": 4}, None, None]}
    assert [r["run_id"] for r in history.collect(str(reports), str(reports / "cur"), current,
                                                 limit=1)["runs"]] == ["a", "cur"]


def test_history_keeps_the_last_30_runs(tmp_path):
    for i in range(35):
        _write_summary(tmp_path / f"r{i:02d}", f"r{i:02d}", f"2026-01-01T00:{i:02d}:00Z")
    current = {"run": {"run_id": "cur", "started_at": "2026-01-02T00:00:00Z"}, "cells": []}
    runs = history.collect(str(tmp_path), str(tmp_path / "cur"), current)["runs"]
    assert len(runs) == 31 and runs[0]["run_id"] == "r05" and runs[-1]["run_id"] == "cur"


# --- harness report --baseline ---------------------------------------------------------

def _run_dir(reports, name, records, started_at):
    """A run directory as `harness run` leaves it: records/ and a summary with run metadata."""
    run_dir = reports / name
    (run_dir / "records").mkdir(parents=True)
    with open(run_dir / "records" / "consume.gw0.jsonl", "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    _write_summary(run_dir, name, started_at)
    return str(run_dir)


@pytest.fixture
def runs(tmp_path, default_matrix_path, capsys):
    """reports/{full4,full5,regressed}, full4's report built; returns a `harness report`."""
    reports = tmp_path / "reports"
    dirs = {"full4": _run_dir(reports, "full4", _records("full4"), "2026-11-21T20:35:08Z"),
            "full5": _run_dir(reports, "full5", _records("full5"), "2026-11-21T20:50:12Z"),
            "regressed": _run_dir(reports, "regressed", _regressed(_records("full5"))[0],
                                  "2026-11-21T21:10:00Z")}

    def report(name, *args):
        code = main(["report", "--matrix", default_matrix_path, dirs[name], *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    assert report("full4")[0] == 0
    return dirs, report


def test_fail_on_regression_exit_status(runs):
    dirs, report = runs
    code, out, err = report("full5", "--baseline", dirs["full4"], "--fail-on", "regression")
    assert (code, err) == (0, "")
    assert "## Changes since run full4" in out and "Other outcome changes: 10" in out
    with open(os.path.join(dirs["full5"], "summary.json")) as fh:
        changes = json.load(fh)["changes"]
    assert changes["counts"]["changed"] == 10 and changes["baseline"]["case_level"]
    code, out, err = report("regressed", "--baseline", dirs["full5"], "--fail-on", "regression")
    assert code == 1
    assert err.strip().splitlines() == [
        "regressions since run full5: 1 cells, 1 cases (--fail-on regression)"]
    assert report("regressed", "--baseline", dirs["full5"])[0] == 0  # --fail-on never
    # only a summary.json: cells only, and the cell regression still fails
    os.remove(os.path.join(dirs["full5"], "results.jsonl"))
    code, out, err = report("regressed", "--baseline",
                            os.path.join(dirs["full5"], "summary.json"), "--fail-on",
                            "regression")
    assert code == 1 and "1 cells, 0 cases" in err and "Cell level only" in out


def test_baseline_last_picks_the_latest_earlier_run(runs, tmp_path):
    dirs, report = runs
    assert report("full5")[0] == 0
    # latest (a symlink to a copy of full5 now) and a run that started later are never the baseline
    _write_summary(tmp_path / "reports" / "later", "later", "2026-12-01T00:00:00Z")
    assert diff.resolve_baseline("last", dirs["regressed"], started_at="2026-11-21T21:10:00Z") \
        == os.path.join(dirs["full5"], "summary.json")
    code, out, _ = report("regressed", "--baseline", "last")
    assert code == 0 and "## Changes since run full5" in out
    with open(os.path.join(dirs["regressed"], "summary.json")) as fh:
        summary = json.load(fh)
    # published relative to the reports directory (no host path)
    assert summary["changes"]["baseline"]["path"] == "<reports>/full5/summary.json"
    assert [r["run_id"] for r in summary["history"]["runs"]] == ["full4", "full5", "regressed"]
    assert "## History (3 runs, oldest first)" in out
    with pytest.raises(UserError, match="--baseline last: no earlier run"):
        diff.resolve_baseline("last", dirs["full4"], started_at="2026-11-21T20:35:08Z")
    assert diff.resolve_baseline("auto", dirs["full4"], started_at="2026-11-21T20:35:08Z") \
        is None


@pytest.mark.parametrize("args, message", [
    (["--baseline", "/nonexistent/run"], "--baseline /nonexistent/run: no such run directory"),
    (["--fail-on", "regression"], "--fail-on regression needs a run to compare with"),
])
def test_bad_baseline_is_one_line_exit_2(runs, args, message):
    _, report = runs
    code, out, err = report("full5", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_baseline_that_is_not_a_summary(runs, tmp_path):
    _, report = runs
    bogus = tmp_path / "bogus.json"
    bogus.write_text("[1, 2]")
    code, _, err = report("full5", "--baseline", str(bogus))
    assert code == 2 and "is not a report summary.json" in err
