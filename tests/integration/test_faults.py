"""No single fault costs more than its own case, with real TF environments:

- a user's model whose traced ``__call__`` never returns (a ``tf.while_loop`` whose
  condition is always true: the hang is in TensorFlow's C++ code, no Python signal
  handler runs) is killed from outside after ``case_timeout_s``, recorded ``timeout``
  alone, and every other case of its stage still runs — with xdist (the worker is
  replaced) and without (the stage's process is started again for what is left);
- a run whose process group is SIGKILLed during its consume stage is continued with
  ``--resume`` and ends with the same case ids and outcomes as a run never killed.
"""
import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from harness import config
from harness.backends.venv import VenvBackend
from harness.stages import read_records
from harness.wheel import build_wheel

from .runs import (
    ROOT,
    consume_running,
    default_signals,
    processes_mentioning,
    start_run,
    tf115_matrix,
    wait_until,
)

pytestmark = pytest.mark.integration

CASE_TIMEOUT_S = 12
MAKE_MODELS = r'''
import sys
import tensorflow as tf


class Hang(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        _, y = tf.while_loop(lambda i, y: tf.constant(True), lambda i, y: (i + 1, y),
                             [tf.constant(0), x])
        return {"y": y}


class Healthy(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.ones([4, 2]) * 0.5)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        return tf.matmul(x, self.w)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def serve(self, x):
        return {"y": self.__call__(x)}


hang, healthy = Hang(), Healthy()
tf.saved_model.save(hang, sys.argv[1], signatures={"serving_default": hang.__call__})
tf.saved_model.save(healthy, sys.argv[2], signatures={"serving_default": healthy.serve})
'''


@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    """(hang, healthy): two TF2 SavedModels made with the matrix's TF 2.21 env."""
    matrix = config.load(os.path.join(ROOT, "matrix.yaml"))
    envs_dir = os.path.join(ROOT, ".envs")
    wheel, wid = build_wheel(os.path.join(envs_dir, ".wheels"))
    prov = VenvBackend(envs_dir, wheel, wid, log=print).provision(matrix.env("tf221-tfkeras"))
    tmp = tmp_path_factory.mktemp("models")
    script = tmp / "make.py"
    script.write_text(MAKE_MODELS)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(prov.argv(str(script), str(tmp / "hang"), str(tmp / "healthy")),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "hang", tmp / "healthy"


def small_matrix(tmp_path, env_ids, **settings):
    with open(os.path.join(ROOT, "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(envs_dir=os.path.join(ROOT, ".envs"),
                           reports_dir=str(tmp_path / "reports"), **settings)
    for model in raw["models"]:
        model["definition"] = os.path.join(ROOT, model["definition"])
    raw["envs"] = [e for e in raw["envs"] if e["id"] in env_ids]
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / "matrix.yaml"


def harness(*args, timeout=1800):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=default_signals)


def results(run_dir):
    with open(run_dir / "results.jsonl") as fh:
        return {r["case_id"]: r for r in map(json.loads, fh)}


@pytest.mark.parametrize("workers", [1, 0])
def test_a_hanging_case_is_killed_alone(tmp_path, user_models, workers):
    hang, healthy = user_models
    matrix = small_matrix(tmp_path, {"tf221-tfkeras"}, workers=workers,
                          case_timeout_s=CASE_TIMEOUT_S)
    proc = harness("run", "--matrix", str(matrix), "--run-id", "hang", "--mode", "tf2",
                   "--model", str(hang), "--model", str(healthy))
    run_dir = tmp_path / "reports" / "hang"
    records = results(run_dir)
    out = proc.stdout + proc.stderr
    timeouts = {cid: r for cid, r in records.items() if r["outcome"] == "timeout"}
    # exactly one: the reference run of the hanging model, named, killed after the limit
    assert list(timeouts) == ["tf221-tfkeras/tf2/saved_model/create/import/hang"], out[-3000:]
    (hung,) = timeouts.values()
    assert hung["error_type"] == "CaseTimeout"
    assert f"longer than case_timeout_s ({CASE_TIMEOUT_S}s)" in hung["message"]
    assert CASE_TIMEOUT_S <= hung["duration_s"] < CASE_TIMEOUT_S + 10
    raw = {r["case_id"]: r for r in read_records(str(run_dir / "records"))}[hung["case_id"]]
    assert raw["repro"] == (f"nox -s matrix -- --matrix {matrix} --model {hang} --model "
                            f"{healthy} --case {hung['case_id']}")  # (published: redacted)
    # every other case ran and was recorded: no infrastructure outcome, the run is complete
    others = [r for cid, r in records.items() if cid not in timeouts]
    assert {r["outcome"] for r in others} <= {"passed", "failed", "error"}, out[-3000:]
    assert records["tf221-tfkeras/tf2/saved_model/create/import/healthy"]["outcome"] == "passed"
    consumed = [r for r in others if r["stage"] == "consume"]
    assert consumed and all(r["model"] in ("healthy", "mlp", "my_mul") for r in consumed)
    assert any(r["model"] == "healthy" and r["outcome"] == "passed" for r in consumed)
    with open(run_dir / "summary.json") as fh:
        run = json.load(fh)["run"]
    assert run["complete"] is True and run["missing_cases"] == 0
    assert proc.returncode == 1 and "1 timeout" in out  # an infra outcome: exit 1
    assert processes_mentioning(str(run_dir)) == []
    assert not (run_dir / "tmp").exists() or not any((run_dir / "tmp").iterdir())


def test_a_killed_run_resumes_to_the_same_results(tmp_path):
    whole = tmp_path / "whole"
    whole.mkdir()
    proc = harness("run", "--matrix", str(tf115_matrix(whole)), "--run-id", "whole")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = results(whole / "reports" / "whole")

    cut = tmp_path / "cut"
    cut.mkdir()
    matrix = tf115_matrix(cut)
    run_dir = cut / "reports" / "cut"
    with open(cut / "host.log", "w") as log:
        first = start_run(matrix, "cut", stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)

    def halfway_through_consume():
        return consume_running(run_dir) and len(
            read_records(str(run_dir / "records"), "consume")) >= 50

    try:
        wait_until(halfway_through_consume, first, why="50 consume records")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the host's group; its stages die with it
        first.wait()
    kept = {r["case_id"]: r for r in read_records(str(run_dir / "records"))}
    assert kept and len(kept) < len(expected)

    again = harness("run", "--matrix", str(matrix), "--resume", "cut")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "run cut: resumed" in again.stdout
    got = results(run_dir)
    assert sorted(got) == sorted(expected)
    assert {cid: r["outcome"] for cid, r in got.items()} == \
        {cid: r["outcome"] for cid, r in expected.items()}
    # every record kept from the killed run is the one it wrote (not run a second time)
    assert all(got[cid]["duration_s"] == r["duration_s"] for cid, r in kept.items())
    with open(run_dir / "summary.json") as fh:
        run = json.load(fh)["run"]
    assert run["complete"] is True
    assert (cut / "reports" / "latest").exists()


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    matrix = tf115_matrix(tmp_path)
    missing = harness("run", "--matrix", str(matrix), "--resume", "nope")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "--resume nope" in missing.stderr and "holds no run.json" in missing.stderr
    mixed = harness("run", "--matrix", str(matrix), "--resume", "nope", "--env", "tf115")
    assert mixed.returncode == 2 and "drop --env" in mixed.stderr
