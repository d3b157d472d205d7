"""Ctrl-C during a real run: stage processes are stopped, nothing measured is lost,
and the report of what was measured is still written (exit 130)."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_interrupt_keeps_records_and_writes_report(tmp_path):
    with open(os.path.join(ROOT, "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(envs_dir=os.path.join(ROOT, ".envs"),
                           reports_dir=str(tmp_path / "reports"))
    for model in raw["models"]:
        model["definition"] = os.path.join(ROOT, model["definition"])
    raw["envs"] = [e for e in raw["envs"] if e["id"] == "tf115"]
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--matrix",
                             str(tmp_path / "matrix.yaml"), "--run-id", "int"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = tmp_path / "reports" / "int"
    deadline = time.monotonic() + 600
    # wait until the consume stage is running, then press Ctrl-C
    while not glob.glob(str(run_dir / "logs" / "consume.*.log")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted: writing the report" in out
    with open(run_dir / "results.jsonl") as fh:
        records = {r["case_id"]: r for r in map(json.loads, fh)}
    creates = {cid: r for cid, r in records.items() if r["stage"] == "create"}
    assert creates and "crashed" not in {r["outcome"] for r in creates.values()}  # it finished
    assert creates["tf115/tf1/saved_model/create/tf.saved_model.save/mlp"]["outcome"] == "passed"
    assert creates["tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp"]["outcome"] == "passed"
    interrupted = [r for r in records.values() if r["outcome"] == "crashed"]
    assert all("interrupted (Ctrl-C)" in r["message"] for r in interrupted)
    assert (run_dir / "summary.json").exists() and (run_dir / "compat.md").exists()
    assert _processes_mentioning(str(run_dir)) == []  # no stage process outlives the run


def _processes_mentioning(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if text in cmdline:
            found.append((pid, cmdline))
    return found
