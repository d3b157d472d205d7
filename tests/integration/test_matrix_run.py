"""The real thing: `harness run` provisions TF 1.15 and TF 2.21 environments with uv,
runs the plugin in each (create, then consume every model from every producer), and
writes the results contract.  An environment that cannot be provisioned becomes
env_error records while the run goes on.

Installs are shared with `nox -s matrix` (the repo's .envs/), so a warm machine
reuses them; a fresh one provisions them here.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

from harness.runtime.records import FIELDS

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TF115_SAVED = "tf115/tf1/saved_model/create/tf.saved_model.save/mlp"
CROSS_TF1_HUB = "tf221-tfkeras/tf2/tf1_hub/load/hub.load-signatures/mlp@tf115/tf1"


def harness(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=3000)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    with open(os.path.join(ROOT, "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    by_id = {e["id"]: e for e in raw["envs"]}
    tmp = tmp_path_factory.mktemp("matrix")
    raw["settings"].update(envs_dir=os.path.join(ROOT, ".envs"), reports_dir=str(tmp / "reports"))
    raw["models"][0]["definition"] = os.path.join(ROOT, "models", "mlp.json")
    raw["envs"] = [
        by_id["tf115"],
        by_id["tf221-tfkeras"],  # compat and tf2
        {"id": "broken", "python": "3.11", "packages": ["tensorflow-cpu==0.0.1"],
         "modes": ["tf2"], "description": "cannot be provisioned: no such release"},
    ]
    (tmp / "matrix.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return tmp


@pytest.fixture(scope="module")
def first_run(workdir):
    proc = harness("run", "--matrix", str(workdir / "matrix.yaml"), "--run-id", "it1")
    run_dir = workdir / "reports" / "it1"
    with open(run_dir / "results.jsonl") as fh:
        records = {r["case_id"]: r for r in map(json.loads, fh)}
    with open(run_dir / "summary.json") as fh:
        summary = json.load(fh)
    return proc, records, summary, run_dir


def test_run_continues_past_an_unprovisionable_env(first_run):
    proc, records, summary, _ = first_run
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # infra failure flagged
    assert "env broken: NOT PROVISIONED" in proc.stdout
    broken = [r for r in records.values() if r["env_id"] == "broken"]
    assert broken and {r["outcome"] for r in broken} == {"env_error"}
    assert all(r["error_type"] == "ProvisionError" and "tensorflow-cpu==0.0.1" in r["message"]
               for r in broken)
    assert summary["envs"]["broken"]["provisioned"] == "error"
    # ...and the real environments were measured in full
    assert summary["envs"]["tf115"]["versions"]["tensorflow"] == "1.15.5"
    assert summary["envs"]["tf221-tfkeras"]["versions"]["tensorflow"] == "2.21.0"


def test_records_follow_the_contract(first_run):
    _, records, summary, run_dir = first_run
    for rec in records.values():
        assert set(FIELDS) <= set(rec), rec["case_id"]
        assert rec["run_id"] == "it1"
        assert rec["repro"] == f"nox -s matrix -- --case {rec['case_id']}" or \
            rec["repro"].startswith("nox -s matrix -- --case '")
    assert summary["totals"]["cases"] == len(records)
    assert {(c["format"], c["operation"], c["column"]) for c in summary["cells"]} >= {
        (f, o, c) for f in ("tf1_hub", "saved_model") for o in ("create", "load", "fine_tune")
        for c in ("tf1", "tf2")}
    assert (run_dir / "compat.md").read_text().startswith("# TF Hub compatibility — run it1")
    latest = run_dir.parent / "latest"
    assert (latest / "summary.json").exists() and (latest / "results.jsonl").exists()
    assert sorted(p.name for p in (run_dir / "records").glob("*.jsonl"))  # one file per worker


def test_tf115_creates_both_formats_and_loads_its_own(first_run):
    _, records, _, _ = first_run
    assert records[TF115_SAVED]["outcome"] == "passed"
    assert records["tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp"]["outcome"] == "passed"
    own = records["tf115/tf1/tf1_hub/load/hub.Module/mlp@tf115/tf1"]
    assert own["outcome"] == "passed" and own["max_abs_err"] <= 1e-5
    tuned = records["tf115/tf1/tf1_hub/fine_tune/hub.Module-trainable/mlp@tf115/tf1"]
    assert tuned["outcome"] == "passed"
    assert tuned["details"]["loss_last"] < tuned["details"]["loss_first"]
    assert tuned["details"]["regularization_losses"] == 1


def test_cross_producer_loads(first_run):
    _, records, _, _ = first_run
    # a TF1 Hub module made by TF 1.15, loaded by TF 2.21 (legacy Keras) with hub.load
    cross = records[CROSS_TF1_HUB]
    assert cross["outcome"] == "passed", cross["message"]
    assert cross["max_abs_err"] <= 1e-5 and cross["tensorflow"] == "2.21.0"
    # a SavedModel made by TF 2.21 cannot be read by TF 1.15: the library's real error
    back = records["tf115/tf1/saved_model/load/hub.load/mlp@tf221-tfkeras/tf2"]
    assert back["outcome"] == "error"
    assert back["error_type"].endswith("NotFoundError")
    assert "DisableCopyOnRead" in back["message"]
    # TF2 fine-tunes a TF 1.15 SavedModel, and the variables really moved
    tape = records["tf221-tfkeras/tf2/saved_model/fine_tune/hub.load-GradientTape/mlp@tf115/tf1"]
    assert tape["outcome"] == "passed", tape["message"]
    assert tape["details"]["variables_changed"]


def test_compat_mode(first_run):
    _, records, _, _ = first_run
    # "The TF2 API tf.saved_model.save() can be called from within compat mode."
    made = records["tf221-tfkeras/compat/saved_model/create/tf.saved_model.save/mlp"]
    assert made["outcome"] == "passed"
    loaded = records["tf221-tfkeras/tf2/saved_model/load/hub.load/mlp@tf221-tfkeras/compat"]
    assert loaded["outcome"] == "passed" and loaded["max_abs_err"] <= 1e-5
    fit = records["tf221-tfkeras/compat/saved_model/fine_tune/hub.KerasLayer-trainable-fit/"
                  "mlp@tf115/tf1"]
    assert fit["outcome"] == "passed", fit["message"]
    # tensorflow_hub 0.16 has no hub.Module: the TF1 column's API is gone in this env
    module = records["tf221-tfkeras/compat/tf1_hub/load/hub.Module/mlp@tf115/tf1"]
    assert module["outcome"] == "error" and module["error_type"] == "AttributeError"
    assert "has no attribute 'Module'" in module["message"]


def test_documented_unsupported_cell_shows_the_real_exception(first_run):
    _, records, summary, _ = first_run
    rec = records["tf221-tfkeras/tf2/tf1_hub/fine_tune/hub.KerasLayer-trainable/mlp@tf115/tf1"]
    assert rec["outcome"] == "error" and rec["traceback"]
    assert "tensorflow_hub" in rec["traceback"]  # raised inside the library, not by us
    cell = next(c for c in summary["cells"] if (c["format"], c["operation"], c["column"]) ==
                ("tf1_hub", "fine_tune", "tf2"))
    assert cell["documented"] == "not_supported" and cell["observed"] == "unsupported"
    assert cell["verdict"] == "as_documented"


def test_repro_command_reruns_exactly_one_case(first_run, workdir):
    proc = harness("run", "--matrix", str(workdir / "matrix.yaml"), "--run-id", "it2",
                   "--case", CROSS_TF1_HUB)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(workdir / "reports" / "it2" / "results.jsonl") as fh:
        ids = [json.loads(line)["case_id"] for line in fh]
    assert ids == ["tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp", CROSS_TF1_HUB]
