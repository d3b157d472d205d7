"""Resuming a run: what run.json keeps, which host records are dropped, the lock, repros."""
import json

import pytest

from harness.errors import UserError
from harness.pipeline import Options, _lock_run, drop_placeholders, repro_of
from harness.runtime.records import RecordWriter
from harness.stages import INTERRUPTED_MESSAGE, read_records


def test_repro_carries_every_flag_the_run_needs():
    assert repro_of(Options()) == "nox -s matrix -- --case {case_id}"
    assert repro_of(Options(matrix="matrices/versions.yaml")) == \
        "nox -s matrix -- --matrix matrices/versions.yaml --case {case_id}"
    assert repro_of(Options(matrix="my dir/m.yaml", models=("/m/a b",), model_format="tf1_hub",
                            model_inputs="x.npz")) == (
        "nox -s matrix -- --matrix 'my dir/m.yaml' --model '/m/a b' --model-format tf1_hub "
        "--model-inputs x.npz --case {case_id}")


def test_saved_options_come_back_as_they_were():
    options = Options(matrix="m.yaml", envs=("tf115",), modes=("tf1", "tf2"), models=("/x",),
                      run_id="r", resume=None)
    saved = json.loads(json.dumps(options.saved()))
    assert "run_id" not in saved and "resume" not in saved
    back = Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()},
                   run_id="r")
    assert back == options


def test_placeholders_and_cut_lines_are_dropped_real_records_kept(tmp_path):
    host = RecordWriter(str(tmp_path / "consume.tf115.tf1.host.jsonl"))
    host.write({"case_id": "a", "outcome": "crashed",
                "message": INTERRUPTED_MESSAGE + "SIGTERM) before this case ran"})
    host.write({"case_id": "b", "outcome": "crashed", "message": "pytest exited with -9"})
    host.write({"case_id": "c", "outcome": "timeout", "message": "the case ran longer"})
    with open(tmp_path / "consume.tf115.tf1.host.jsonl", "a") as fh:
        fh.write('{"case_id": "cut')
    worker = RecordWriter(str(tmp_path / "consume.tf115.tf1.gw0.jsonl"))
    worker.write({"case_id": "d", "outcome": "crashed",
                  "message": INTERRUPTED_MESSAGE + "Ctrl-C)"})  # never the host's: kept
    assert drop_placeholders(str(tmp_path)) == 1
    assert sorted(r["case_id"] for r in read_records(str(tmp_path))) == ["b", "c", "d"]


def test_a_record_after_a_cut_line_is_not_lost(tmp_path):
    path = tmp_path / "create.tf115.tf1.main.jsonl"
    path.write_text('{"case_id": "a"}\n{"case_id": "cu')  # the process was killed mid-line
    RecordWriter(str(path)).write({"case_id": "b"})
    assert [r["case_id"] for r in read_records(str(tmp_path))] == ["a", "b"]


def test_a_run_held_by_another_process_is_refused(tmp_path):
    import subprocess
    import sys
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; fh = open(sys.argv[1], 'a+'); "
         "fcntl.flock(fh, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(tmp_path / "run.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="running in another process"):
            _lock_run(str(tmp_path), "r")
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    _lock_run(str(tmp_path), "r")  # free again


def test_braces_in_a_path_stay_text_in_the_repro_template():
    template = repro_of(Options(matrix="/x/{a}.yaml"))
    assert template.format(case_id="c") == "nox -s matrix -- --matrix '/x/{a}.yaml' --case c"
