"""The versions matrix narrowed to four releases (TF 1.15, 2.14, 2.15, 2.21), run for real:
the release table expands into envs, every (producer release x consumer release) pair is
checked with the primary load call of the consumer's column, every variant runs against
the reference producers only, and the report derives its cells from the records."""
import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MATRIX: list = []  # the narrowed matrix file, for the bisect test
KEEP = {"1.15": ["tf1"], "2.14": ["tf2"], "2.15": ["tf2"], "2.21": ["tf2"]}


@pytest.fixture(scope="module")
def versions_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("versions")
    with open(os.path.join(ROOT, "matrices", "versions.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(envs_dir=os.path.join(ROOT, ".envs"),
                           reports_dir=str(tmp / "reports"))
    raw["models"] = [{"name": m["name"], "definition": os.path.join(ROOT, "models",
                                                                   m["name"] + ".json")}
                     for m in raw["models"]]
    raw["expectations"] = os.path.join(ROOT, "matrix.yaml")
    table = raw["releases"]["table"]
    raw["releases"]["table"] = {r: dict(table[r], modes=modes) for r, modes in KEEP.items()}
    # TF 2.21 on the default matrix's Python (its wheel is in uv's cache after the default
    # matrix's tests); hub 0.15 and tf-keras only: the fewest installs that sample pairs
    raw["releases"]["table"]["2.21"]["python"] = "3.12"
    raw["releases"]["table"]["2.21"]["flavours"] = ["tfkeras"]
    for r in ("1.15", "2.14", "2.15"):
        raw["releases"]["table"][r]["flavours"] = ["hub015"]
    (tmp / "versions.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    MATRIX.append(tmp / "versions.yaml")
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--matrix",
                           str(tmp / "versions.yaml"), "--run-id", "v1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=3000)
    run_dir = tmp / "reports" / "v1"
    with open(run_dir / "results.jsonl") as fh:
        records = [json.loads(line) for line in fh]
    with open(run_dir / "summary.json") as fh:
        summary = json.load(fh)
    return proc, records, summary


def test_every_release_runs_without_infrastructure_trouble(versions_run):
    proc, records, summary = versions_run
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert summary["totals"]["outcomes"].get("harness_error", 0) == 0, proc.stderr[-3000:]
    assert not {o for o in summary["totals"]["outcomes"]} & {"crashed", "timeout",
                                                             "env_error"}
    assert {r["env_id"] for r in records} == {
        "tf1.15-hub015", "tf2.14-hub015", "tf2.15-hub015", "tf2.21-tfkeras"}
    assert {e: summary["envs"][e]["release"] for e in summary["envs"]} == {
        "tf1.15-hub015": "1.15", "tf2.14-hub015": "2.14", "tf2.15-hub015": "2.15",
        "tf2.21-tfkeras": "2.21"}
    assert summary["envs"]["tf2.14-hub015"]["versions"]["tensorflow-cpu"].startswith("2.14.")


def test_pairs_are_sampled_as_the_readme_says(versions_run):
    _, records, _ = versions_run
    apis = defaultdict(set)
    for r in records:
        if r["stage"] == "consume" and r["via"] == "path":
            apis[(r["env_id"], r["producer_env"], r["format"])].add(r["api"])
    # 2.14 and 2.15 are no reference producer of each other: the primary call only
    assert apis[("tf2.14-hub015", "tf2.15-hub015", "saved_model")] == {"hub.load"}
    assert apis[("tf2.15-hub015", "tf2.14-hub015", "saved_model")] == {"hub.load"}
    assert apis[("tf1.15-hub015", "tf2.14-hub015", "saved_model")] == {"hub.load"}
    # the references (own env, TF 1.15, the newest release): every variant
    for producer in ("tf2.14-hub015", "tf1.15-hub015", "tf2.21-tfkeras"):
        assert len(apis[("tf2.14-hub015", producer, "saved_model")]) > 5, producer
    # every (producer release x consumer release) pair, for each format a producer made
    made = {(r["env_id"], r["format"]) for r in records
            if r["operation"] == "create" and r["outcome"] == "passed"}
    for consumer in KEEP:
        for producer_env, fmt in made:
            c_env = next(e for e in {r["env_id"] for r in records}
                         if e.startswith(f"tf{consumer}-"))
            assert apis[(c_env, producer_env, fmt)], (c_env, producer_env, fmt)


def test_cells_count_the_documents_calls_and_keep_every_variant(versions_run):
    _, records, summary = versions_run
    cell = {(c["format"], c["operation"], c["column"]): c for c in summary["cells"]}
    load = cell[("saved_model", "load", "tf2")]
    assert set(load["calls"]) == {"hub.load", "hub.KerasLayer"}
    assert load["all_calls"]["attempted"] > load["attempted"] > 0
    module = cell[("tf1_hub", "load", "tf1")]
    counted = [r for r in records if r["format"] == "tf1_hub" and r["operation"] == "load"
               and r["column"] == "tf1" and r["api"] == "hub.Module" and r["via"] == "path"]
    assert module["attempted"] == len(counted) > 0


def test_ranges_conditions_and_the_corrected_table(versions_run):
    _, _, summary = versions_run
    cell = {(c["format"], c["operation"], c["column"]): c for c in summary["cells"]}
    for c in cell.values():
        if c["attempted"]:
            assert c["ranges"], (c["format"], c["operation"], c["column"])
            assert sum(r["attempted"] for r in c["ranges"]) == c["attempted"]
    grid = {g["format"]: g for g in summary["grid"]}
    assert grid["saved_model"]["releases"] == ["1.15", "2.14", "2.15", "2.21"]
    pairs = {(c["producer"], c["consumer"]) for c in grid["saved_model"]["cells"]}
    assert {(p, c) for p in ("2.14", "2.15", "2.21") for c in ("1.15", "2.14")} <= pairs
    table = summary["docs_table"]
    assert [f["format"] for f in table["formats"]] == ["tf1_hub", "saved_model"]


def test_bisect_probes_the_ends_of_the_release_axis(versions_run):
    case = "tf2.14-hub015/tf2/saved_model/load/hub.load/mlp@tf1.15-hub015/tf1"
    proc = subprocess.run([sys.executable, "-m", "harness", "bisect", case, "--matrix",
                           str(MATRIX[0])], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()
    assert any(line.startswith(("no change along tensorflow", "boundary along tensorflow"))
               for line in last), proc.stdout[-2000:]
    assert "tf2.15-hub015" in proc.stdout  # the other end was provisioned and probed
