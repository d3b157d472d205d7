"""The nightly workflow's own run: steps, executed here (.ci/rehearse.py) on a small matrix
(TF 1.15 in both of its modes): plan -> create shards -> consume shards -> merge -> publish
into the directory a real http.server on 127.0.0.1 serves, then a second night that takes
the first from that site as its baseline and history."""
import json
import os
import subprocess
import sys

import pytest

from .runs import tf115_matrix

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_nights(tmp_path):
    matrix = tf115_matrix(tmp_path)
    work = tmp_path / "rehearsal"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, ".ci", "rehearse.py"),
                           "--matrix", str(matrix), "--work", str(work)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    assert "rehearsal ok" in proc.stdout
    timings = json.loads((work / "timings.json").read_text())
    first, second = timings["run_ids"]
    # every job of the workflow ran, the shards one job per env x mode
    ran = {(t["night"], t["job"], t["index"]) for t in timings["steps"]}
    for night in (1, 2):
        assert {(j, i) for n, j, i in ran if n == night} == {
            ("plan", 0), ("create", 0), ("create", 1), ("consume", 0), ("consume", 1),
            ("merge", 0), ("deploy", 0)}
    assert all(t["ok"] for t in timings["steps"] if t["step"] != "the night's verdict")

    run2 = work / "night-2" / "jobs" / "merge-0" / "workspace" / "run"
    summary = json.loads((run2 / "summary.json").read_text())
    assert summary["run"]["run_id"] == second
    assert summary["changes"]["baseline"]["run_id"] == first
    assert first in json.dumps(summary["history"])
    assert summary["run"]["shards"]["failed"] == [] and summary["run"]["shards"]["missing"] == []
    assert summary["run"]["shards"]["planned"] == summary["run"]["shards"]["merged"] == 4
    compat = (run2 / "compat.md").read_text()
    assert first in compat
    # the job summary got compat.md and the verdict of harness report
    step_summary = (work / "night-2" / "jobs" / "merge-0" / "github_step_summary").read_text()
    assert f"## Nightly run {second}" in step_summary
    assert "harness report: exit 0" in step_summary
    # the published site holds both nights, newest first and in front
    site = work / "pages"
    index = json.loads((site / "runs" / "index.json").read_text())
    assert [r["run_id"] for r in index["runs"]][:2] == [second, first]
    for run_id in (first, second):
        for name in ("summary.json", "results.jsonl.gz", "index.html", "compat.md"):
            assert (site / "runs" / run_id / name).is_file()
    assert second in (site / "index.html").read_text()
    # the JUnit XML of every stage came back as an artifact
    artifacts = sorted(os.listdir(work / "night-2" / "artifacts"))
    junit = [a for a in artifacts if a.startswith("junit-")]
    assert junit == ["junit-consume-tf115-tf1", "junit-consume-tf115-tf1_eager",
                     "junit-create-tf115-tf1", "junit-create-tf115-tf1_eager"]
    for name in junit:
        (xml,) = os.listdir(work / "night-2" / "artifacts" / name)
        assert xml.endswith(".xml")
