"""A real run stopped during its consume stage — Ctrl-C, SIGTERM, or its whole process
group SIGKILLed: no stage process outlives it, nothing measured is lost, no case is
recorded against the hub server that died with it, and what is left says so."""
import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.runtime.cases import parse_case_id
from harness.stages import read_records

from .runs import (
    ROOT,
    consume_running,
    processes_in_sessions,
    processes_mentioning,
    stage_sessions,
    start_run,
    tf115_matrix,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("signum, status, by", [(signal.SIGINT, 130, "Ctrl-C"),
                                                (signal.SIGTERM, 143, "SIGTERM")])
def test_interrupt_keeps_records_and_writes_report(tmp_path, signum, status, by):
    proc = start_run(tf115_matrix(tmp_path), "int", stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT)
    run_dir = tmp_path / "reports" / "int"
    wait_until(lambda: consume_running(run_dir) and stage_sessions(run_dir), proc,
               why="the consume stage")
    sessions = stage_sessions(run_dir)
    try:
        proc.send_signal(signum)  # to the host alone: Ctrl-C, `timeout`, a CI cancel
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == status, out
        assert f"interrupted ({by}): writing the report" in out
        with open(run_dir / "results.jsonl") as fh:
            records = {r["case_id"]: r for r in map(json.loads, fh)}
        creates = {cid: r for cid, r in records.items() if r["stage"] == "create"}
        assert creates and "crashed" not in {r["outcome"] for r in creates.values()}  # finished
        assert (creates["tf115/tf1/saved_model/create/tf.saved_model.save/mlp"]["outcome"]
                == "passed")
        assert (creates["tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp"]["outcome"]
                == "passed")
        interrupted = [r for r in records.values() if r["outcome"] == "crashed"]
        assert all(f"interrupted ({by})" in r["message"] for r in interrupted)
        assert (run_dir / "summary.json").exists() and (run_dir / "compat.md").exists()
        assert _refused(records.values()) == []
        assert processes_mentioning(str(run_dir)) == []  # no stage process outlives the run
        assert processes_in_sessions(sessions) == []
    finally:
        _kill_sessions(sessions)


def test_sigkilled_run_leaves_no_stage_and_no_false_records(tmp_path):
    matrix = tf115_matrix(tmp_path)
    run_dir = tmp_path / "reports" / "kill"
    with open(tmp_path / "host.log", "w") as log:
        proc = start_run(matrix, "kill", stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)

    def consume_recording():
        return consume_running(run_dir) and any(
            r["stage"] == "consume" for r in read_records(str(run_dir / "records"), "consume"))

    sessions = set()
    try:
        wait_until(consume_recording, proc, why="the first consume records")
        sessions = stage_sessions(run_dir)
        # each stage: its pytest main and its xdist worker (workers: 1), in a session of its own
        assert sessions and len(processes_in_sessions(sessions)) >= 2 * len(sessions)
        recorded = {r["case_id"] for r in read_records(str(run_dir / "records"), "consume")}
        to_come = [cid for cid in _collected(run_dir) if cid not in recorded and _by_url(cid)]
        assert to_come, "every URL case was recorded before the kill: nothing to check"
        os.killpg(proc.pid, signal.SIGKILL)  # the host's whole group: the stages are not in it
        proc.wait()
        deadline = time.monotonic() + 10
        while processes_in_sessions(sessions) or processes_mentioning(str(run_dir)):
            assert time.monotonic() < deadline, (processes_mentioning(str(run_dir)),
                                                 processes_in_sessions(sessions))
            time.sleep(0.2)
        time.sleep(10)  # what a surviving stage would have recorded by now
        records = read_records(str(run_dir / "records"))
        assert _refused(records) == []
    finally:
        _kill_sessions(sessions)
    report = subprocess.run([sys.executable, "-m", "harness", "report", str(run_dir),
                             "--matrix", str(matrix)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert report.returncode == 1, report.stdout + report.stderr
    with open(run_dir / "summary.json") as fh:
        run = json.load(fh)["run"]
    assert run["complete"] is False and run["missing_cases"] > 0, run
    assert not (tmp_path / "reports" / "latest").exists()  # an unfinished run is not latest


def _refused(records):
    """By-URL cases recorded as the library's error for a connection nobody accepted."""
    return [(r["case_id"], r["message"]) for r in records
            if r.get("via") == "url" and r["outcome"] == "error"
            and any(s in (r.get("message") or "") for s in ("Connection refused", "URLError"))]


def _by_url(case_id):
    case = parse_case_id(case_id)
    return case.api.endswith("-url") or case.operation == "download"


def _collected(run_dir):
    ids = []
    for path in glob.glob(str(run_dir / "records" / "consume.*.collected.json")):
        with open(path) as fh:
            ids.extend(json.load(fh))
    return ids


def _kill_sessions(sessions):
    """Whatever a failing check left behind (a stage's session is its process group)."""
    for sid in sessions:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGKILL)
