"""Aggregation (levels, verdicts) and the Markdown report against a golden file."""
import json
import os

import pytest

from harness import config
from harness.report import write_reports
from harness.report.summary import level, verdict

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources")


@pytest.mark.parametrize("counts, expected", [
    ({"passed": 3}, "supported"),
    ({"passed": 2, "error": 1}, "partial"),
    ({"passed": 2, "failed": 1}, "partial"),
    ({"error": 3}, "unsupported"),
    ({"failed": 1}, "unsupported"),
    ({}, "unknown"),
    ({"env_error": 4, "crashed": 1, "timeout": 1, "skipped": 2}, "unknown"),
    ({"passed": 1, "env_error": 4}, "supported"),
])
def test_level_ignores_infrastructure(counts, expected):
    assert level(counts) == expected


@pytest.mark.parametrize("documented, observed, expected", [
    ("supported", "supported", "as_documented"),
    ("supported", "partial", "regression"),
    ("supported", "unsupported", "regression"),
    ("not_supported", "unsupported", "as_documented"),
    ("not_supported", "partial", "undocumented_support"),
    ("not_supported", "supported", "undocumented_support"),
    (None, "supported", "undocumented"),
    ("supported", "unknown", "unknown"),
])
def test_verdict(documented, observed, expected):
    assert verdict(documented, observed) == expected


def _records():
    with open(os.path.join(RESOURCES, "records.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def test_summary_and_markdown_golden(default_matrix_path, tmp_path):
    matrix = config.load(default_matrix_path)
    run_dir = tmp_path / "reports" / "r1"
    run_dir.mkdir(parents=True)
    # the sample's records were made on host "vm" (TF's messages name it)
    run = {"run_id": "r1", "git_commit": "abc123", "duration_s": 12.0, "host": "vm"}
    envs = {"tf115": {"versions": {"tensorflow": "1.15.5", "tensorflow-hub": "0.12.0"}},
            "tf221-keras3": {"versions": {"tensorflow": "2.21.0", "tensorflow-hub": "0.16.1"}},
            "broken": {"versions": {}, "provisioned": "error"}}
    summary = write_reports(str(run_dir), _records(), matrix, run, envs)
    cell = {(c["format"], c["operation"], c["column"]): c for c in summary["cells"]}
    load_tf1 = cell[("saved_model", "load", "tf1")]
    assert (load_tf1["passed"], load_tf1["attempted"], load_tf1["observed"],
            load_tf1["verdict"]) == (1, 2, "partial", "regression")
    assert load_tf1["examples"][0]["error_type"].endswith("NotFoundError")
    assert cell[("tf1_hub", "fine_tune", "tf2")]["verdict"] == "as_documented"
    assert cell[("saved_model", "fine_tune", "tf2")]["observed"] == "unknown"
    assert cell[("saved_model", "fine_tune", "tf2")]["infra"] == 1
    assert summary["totals"]["cases"] == len(_records())
    # the same calls on a URL: their own counts, never mixed into the path cells
    assert (load_tf1["by_handle"]["passed"], load_tf1["by_handle"]["attempted"]) == (1, 1)
    assert "hub.load-url" not in load_tf1["apis"]
    assert cell[("tf1_hub", "fine_tune", "tf2")]["by_handle"]["verdict"] == "as_documented"
    assert "by_handle" not in cell[("saved_model", "create", "tf2")]
    downloads = {(d["env_id"], d["mode"]): d["checks"] for d in summary["downloads"]}
    assert downloads[("tf115", "tf1")]["redirect-308"]["observed"] == "unsupported"
    assert downloads[("tf221-tfkeras", "tf2")]["redirect-308"]["observed"] == "supported"
    truncated = downloads[("tf221-tfkeras", "tf2")]["fault-truncated"]["library_reports"]
    assert truncated == [{"message": "OSError: <handle URL> does not appear to be a valid "
                                     "module.", "cases": 1}]
    md = (run_dir / "compat.md").read_text()
    with open(os.path.join(RESOURCES, "compat.golden.md")) as fh:
        assert md == fh.read()
    latest = tmp_path / "reports" / "latest"
    assert sorted(os.listdir(latest)) == ["RUN", "compat.md", "docs-table.md", "index.html",
                                          "results.jsonl", "summary.json"]
    assert (latest / "RUN").read_text().strip() == "r1"


def test_harness_report_rebuilds_from_records(default_matrix_path, tmp_path):
    import shutil
    import subprocess
    import sys
    run_dir = tmp_path / "reports" / "r9"
    (run_dir / "records").mkdir(parents=True)
    shutil.copy(os.path.join(RESOURCES, "records.jsonl"), run_dir / "records" / "a.gw0.jsonl")
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--matrix",
                           default_matrix_path, str(run_dir)], capture_output=True, text=True)
    # the sample holds a crashed and an env_error record: rebuilt, and said so
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ("error: run r9: infrastructure failures (not compatibility "
                           "results): 1 crashed, 1 env_error\n")
    assert "# TF Hub compatibility — run r9" in proc.stdout
    with open(run_dir / "summary.json") as fh:
        assert json.load(fh)["totals"]["cases"] == len(_records())
    missing = subprocess.run([sys.executable, "-m", "harness", "report", "--matrix",
                              default_matrix_path, str(tmp_path / "nope")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no records/ directory" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_harness_report_exits_1_on_a_harness_error(default_matrix_path, tmp_path):
    import subprocess
    import sys
    run_dir = tmp_path / "reports" / "r8"
    (run_dir / "records").mkdir(parents=True)
    records = _records()
    records[0] = dict(records[0], outcome="harness_error", error_type="TypeError",
                      message="float() argument must be a string or a real number",
                      traceback="Traceback (most recent call last):\n...\nTypeError: float()")
    (run_dir / "records" / "a.gw0.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records))
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--matrix",
                           default_matrix_path, str(run_dir)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: run r8: infrastructure failures")
    assert "1 harness_error" in proc.stderr


def _health(api, outcome="passed", **fields):
    rec = {"case_id": f"tf115/tf1/environment/health/{api}/env", "stage": "create",
           "env_id": "tf115", "mode": "tf1", "column": "tf1", "format": "environment",
           "operation": "health", "api": api, "model": "env", "producer_env": "tf115",
           "producer_mode": "tf1", "outcome": outcome, "run_id": "r1"}
    rec.update(fields)
    return rec


def test_missing_fields_are_null_never_nan(default_matrix_path, tmp_path, strict_json):
    """Records that lack fields (older records, health checks) and a NaN a record holds:
    every file parses strictly, a missing value is null, never NaN or "nan"."""
    matrix = config.load(default_matrix_path)
    records = _records() + [_health("import-tensorflow_hub"),  # no error_type / message
                            _health("tf.estimator", "error", error_type="AttributeError",
                                    message="no estimator", max_abs_err=float("nan"))]
    records[0] = dict(records[0], max_abs_err=float("nan"), max_rel_err=float("inf"))
    run_dir = tmp_path / "reports" / "r1"
    run_dir.mkdir(parents=True)
    summary = write_reports(str(run_dir), records, matrix, {"run_id": "r1"}, {})
    checks = {c: v for row in summary["health"] for c, v in row["checks"].items()}
    assert checks["import-tensorflow_hub"]["error_type"] is None
    assert checks["import-tensorflow_hub"]["message"] == ""
    assert checks["import-tensorflow_hub"]["max_abs_err"] is None
    assert checks["tf.estimator"]["max_abs_err"] is None
    text = (run_dir / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = strict_json(text)
    assert data["run"]["complete"] is True and data["run"]["missing_cases"] == 0
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    results = [strict_json(line) for line in lines]
    first = next(r for r in results if r["case_id"] == records[0]["case_id"])
    assert first["max_abs_err"] is None and first["max_rel_err"] is None
    page = (run_dir / "index.html").read_text()
    embedded = page.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    strict_json(embedded)


def _harness_error():
    tb = ("Traceback (most recent call last):\n"
          '  File "harness/runtime/formats/saved_model.py", line 120, in fine_tune\n'
          "    w = float(np.asarray(v))\n"
          "TypeError: float() argument must be a string or a real number, not "
          "'UninitializedVariable' <script>alert(1)</script>")
    rec = {"case_id": "tf115/tf1_eager/saved_model/fine_tune/MyMulModel-trainable/"
                      "my_mul@tf115/tf1_eager", "stage": "consume", "env_id": "tf115",
           "mode": "tf1_eager", "column": "tf1", "format": "saved_model",
           "operation": "fine_tune", "api": "MyMulModel-trainable", "model": "my_mul",
           "producer_env": "tf115", "producer_mode": "tf1_eager", "outcome": "harness_error",
           "error_type": "TypeError", "message": "float() argument must be ... "
           "'UninitializedVariable'\nsecond line", "traceback": tb, "model_kind": "my_mul",
           "via": "path", "run_id": "r1", "repro": "nox -s matrix -- --case x"}
    return rec, tb


def test_harness_error_is_infrastructure_listed_with_its_traceback(default_matrix_path,
                                                                   tmp_path):
    matrix = config.load(default_matrix_path)
    rec, tb = _harness_error()
    run_dir = tmp_path / "reports" / "r1"
    run_dir.mkdir(parents=True)
    before = {(c["format"], c["operation"], c["column"]): c
              for c in write_reports(str(run_dir), _records(), matrix, {"run_id": "r1"},
                                     {})["cells"]}
    summary = write_reports(str(run_dir), _records() + [rec], matrix, {"run_id": "r1"}, {})
    cell = next(c for c in summary["cells"] if (c["format"], c["operation"], c["column"])
                == ("saved_model", "fine_tune", "tf1"))
    old = before[("saved_model", "fine_tune", "tf1")]
    assert (cell["attempted"], cell["observed"]) == (old["attempted"], old["observed"])
    assert cell["all_calls"]["attempted"] == old["all_calls"]["attempted"]
    assert cell["all_calls"]["infra"] == old["all_calls"]["infra"] + 1  # never "not supported"
    infra = summary["infrastructure"]
    assert infra["counts"] == {"crashed": 1, "env_error": 1, "harness_error": 1}
    assert infra["harness_errors"] == [{
        "error_type": "TypeError", "message": rec["message"], "traceback": tb, "cases": 1,
        "case_ids": [rec["case_id"]], "repro": rec["repro"]}]
    md = (run_dir / "compat.md").read_text()
    section = md.split("## Infrastructure")[1]
    assert "<details><summary>harness_error × 1: <code>TypeError</code>" in section
    assert f"`{rec['case_id']}`" in section
    assert f"```\n{tb}\n```" in section  # the whole traceback, as code
    assert "second line" in section
    page = (run_dir / "index.html").read_text()
    assert 'data-testid="infrastructure"' in page and 'data-testid="harness-error"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "float(np.asarray(v))" in page  # the middle of the traceback too
    assert '"infra":["crashed","env_error","harness_error","timeout"]' in page
    assert ".out-harness_error" in page
    assert "crashed / timeout / env_error / harness_error" in page


def test_exit_status(capsys):
    from types import SimpleNamespace

    from harness.pipeline import exit_status
    rec, _ = _harness_error()

    def run(*models, references=None):
        return SimpleNamespace(matrix=SimpleNamespace(models=list(models)),
                               references=references or {})

    def summary(records, **run_fields):
        outcomes = {}
        for r in records:
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        return {"run": dict({"complete": True}, **run_fields),
                "totals": {"cases": len(records), "outcomes": outcomes}}

    mlp = config.Model("mlp", "models/mlp.json", {"kind": "mlp"})
    passed = dict(rec, outcome="passed")
    assert exit_status(run(mlp), [passed], summary([passed])) == 0
    assert exit_status(run(mlp), [rec], summary([rec])) == 1  # harness_error: infrastructure
    assert "infrastructure failures (not compatibility results): 1 harness_error" in \
        capsys.readouterr().out
    assert exit_status(run(mlp), [passed], summary([passed], complete=False,
                                                   missing_cases=7)) == 1
    assert "error: the run is incomplete: 7 planned cases have no record" in \
        capsys.readouterr().out
    assert exit_status(run(mlp), [], summary([])) == 1
    assert "error: the run executed no case" in capsys.readouterr().out
    mine = config.Model("mine", "/m", {"kind": "user"})
    imported = dict(passed, operation="create", model="mine")
    assert exit_status(run(mine, references={"mine": ["tf115", "tf1"]}), [imported],
                       summary([imported])) == 0
    failed = dict(imported, outcome="error")
    assert exit_status(run(mine), [failed], summary([failed])) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["tfhub-compat: error: no environment could import any of your models "
                   "(mine): nothing was compared; see the import cases in the report"]
    # a --case repro of a user model's health check imports nothing: nothing to say
    assert exit_status(run(mine), [passed], summary([passed])) == 0
