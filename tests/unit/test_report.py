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
    run = {"run_id": "r1", "git_commit": "abc123", "duration_s": 12.0}
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
    assert sorted(os.listdir(latest)) == ["RUN", "compat.md", "index.html", "results.jsonl",
                                          "summary.json"]
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
    assert proc.returncode == 0, proc.stderr
    assert "# TF Hub compatibility — run r9" in proc.stdout
    with open(run_dir / "summary.json") as fh:
        assert json.load(fh)["totals"]["cases"] == len(_records())
    missing = subprocess.run([sys.executable, "-m", "harness", "report", "--matrix",
                              default_matrix_path, str(tmp_path / "nope")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no records/ directory" in missing.stderr
    assert "Traceback" not in missing.stderr
