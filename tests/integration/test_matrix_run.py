"""The real thing: `harness run` provisions TF 1.15 and TF 2.21 environments with uv,
runs the plugin in each (create, then consume every model from every producer), and
writes the results contract.  An environment that cannot be provisioned becomes
env_error records while the run goes on.

Installs are shared with `nox -s matrix` (the repo's .envs/), so a warm machine
reuses them; a fresh one provisions them here.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from harness.runtime.records import FIELDS
from harness.stages import read_records

from . import chromium

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
    for model in raw["models"]:
        model["definition"] = os.path.join(ROOT, model["definition"])
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
    raw = {r["case_id"]: r for r in read_records(str(run_dir / "records"))}
    assert sorted(raw) == sorted(records)
    for rec in records.values():
        assert set(FIELDS) <= set(rec), rec["case_id"]
        assert rec["run_id"] == "it1"
        # the matrix is not matrix.yaml: the repro names it (published: its directory hidden)
        assert raw[rec["case_id"]]["repro"] == \
            f"nox -s matrix -- --matrix {run_dir.parent.parent / 'matrix.yaml'} --case " \
            + shlex.quote(rec["case_id"])
        assert rec["repro"] == "nox -s matrix -- --matrix <matrix-dir>/matrix.yaml --case " \
            + shlex.quote(rec["case_id"])
    assert summary["totals"]["cases"] == len(records)
    assert {(c["format"], c["operation"], c["column"]) for c in summary["cells"]} >= {
        (f, o, c) for f in ("tf1_hub", "saved_model") for o in ("create", "load", "fine_tune")
        for c in ("tf1", "tf2")}
    assert (run_dir / "compat.md").read_text().startswith("# TF Hub compatibility — run it1")
    dom = chromium.dom((run_dir / "index.html").as_uri() + "#open=doc:tf1_hub/load/tf2")
    assert 'data-ready="1"' in dom and dom.count('data-testid="doc-table"') == 3
    assert CROSS_TF1_HUB in dom  # the drill-down of a real cell lists its real cases
    latest = run_dir.parent / "latest"
    assert (latest / "summary.json").exists() and (latest / "results.jsonl").exists()
    assert sorted(p.name for p in (run_dir / "records").glob("*.jsonl"))  # one file per worker


# every JSON text of the files given: strict JSON.parse, and no value is the string "nan"
NODE_CHECK = r"""
const fs = require('fs'); const bad = [];
function walk(f, x) {
  if (typeof x === 'string') { if (x.trim().toLowerCase() === 'nan') bad.push(f + ': "nan"'); }
  else if (x && typeof x === 'object') { for (const k in x) { walk(f, k); walk(f, x[k]); } }
}
for (const f of process.argv.slice(1)) {
  const text = fs.readFileSync(f, 'utf8');
  const docs = f.endsWith('.jsonl') ? text.split('\n').filter(l => l.trim()) : [text];
  for (const d of docs) {
    try { walk(f, JSON.parse(d)); } catch (e) { bad.push(f + ': ' + e.message); }
  }
}
console.log(JSON.stringify(bad));
"""


def _json_texts(path):
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [line for line in text.splitlines() if line.strip()]
    if path.suffix == ".html":  # the page's embedded data
        return [text.split('<script type="application/json" id="data">')[1]
                .split("</script>")[0]]
    return [text]


def test_every_json_file_of_the_run_is_strict_json(first_run, tmp_path, strict_json):
    """summary.json, results.jsonl, run.json, records, plans, manifests, the hub server's
    log and the page's data: Python's strict parser and Node's JSON.parse read them all,
    and a missing value is null, never NaN or "nan"."""
    _, _, summary, run_dir = first_run
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.suffix in
                   (".json", ".jsonl") and not {"tfhub_cache", "model"} & set(
                       p.relative_to(run_dir).parts[:-1]))  # not what TF wrote
    names = {p.relative_to(run_dir).as_posix() for p in files}
    assert {"summary.json", "results.jsonl", "run.json", "hubserver.jsonl"} <= names
    assert any(n.startswith("records/") for n in names) and any(
        n.startswith("plans/") for n in names) and any(n.startswith("store/") for n in names)
    for path in files + [run_dir / "index.html"]:
        for text in _json_texts(path):
            strict_json(text)
    node = shutil.which("node")
    assert node, "Node.js is missing: apt-get install nodejs (what .ci/run does)"
    page_data = tmp_path / "index-data.json"
    page_data.write_text(_json_texts(run_dir / "index.html")[0])
    proc = subprocess.run([node, "-e", NODE_CHECK, *map(str, files), str(page_data)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == []
    # a finished run (its unprovisionable env's cases are env_error records) is complete
    assert summary["run"]["complete"] is True and summary["run"]["missing_cases"] == 0


PUBLISHED = ("compat.md", "index.html", "summary.json", "results.jsonl")


def _private_in(text, run_dir, port, secrets=()):
    """What of this machine a published text shows (an empty list: nothing)."""
    import platform
    import re
    found = [p for p in {str(run_dir), os.path.realpath(run_dir), str(run_dir.parent),
                         os.path.join(ROOT, ".envs"), os.path.expanduser("~") + "/",
                         f"127.0.0.1:{port}", *secrets} if p in text]
    found += re.findall(r"(?<![\w.>~-])/(?:root|tmp|home)\b[^\s\"']{0,60}", text)[:3]
    found += re.findall(r"(?<![\w>])/(?:[\w.+@-]+/)+(?:site|dist)-packages", text)[:3]
    host = platform.node()
    if host and host != "localhost":
        found += re.findall(r"(?<![\w.-])" + re.escape(host) + r"(?![\w-]|\.\w)", text)[:3]
    return found


def test_published_files_hold_nothing_of_this_machine(first_run, workdir, tmp_path):
    """compat.md, index.html, summary.json and results.jsonl of a real run: no run, envs,
    home, /root, /tmp or site-packages path, no host name, no hub server port; the env var
    the matrix publishes shows its value, any other only its name (a run reported with a
    private value in its env, its old summary and a record's message)."""
    _, _, summary, run_dir = first_run
    with open(next((run_dir / "plans").glob("consume.*.json"))) as fh:
        port = json.load(fh)["hub_url"].rsplit(":", 1)[1]
    for name in PUBLISHED:
        assert _private_in((run_dir / name).read_text(), run_dir, port) == [], name
    assert summary["run"]["host"] == "<hidden>" and summary["run"]["matrix"] == "matrix.yaml"
    assert summary["envs"]["tf221-tfkeras"]["env_vars"] == {"TF_USE_LEGACY_KERAS": "1"}
    assert summary["envs"]["tf115"]["location"].startswith("<envs>/py3.7-")
    records = (run_dir / "results.jsonl").read_text()
    assert "<env:tf221-tfkeras>/site-packages/" in records and "<run>/store/" in records
    raw = "".join(p.read_text() for p in (run_dir / "records").glob("*.jsonl"))
    assert os.path.join(ROOT, ".envs") in raw  # records/ keep the raw evidence
    # the same run with a private value: harness report of a copy, the value in the matrix's
    # env, in the old summary (as an older harness wrote it) and quoted by a message
    secret = "tfhub-compat-private-7f3a9c"
    copy = tmp_path / "reports" / "it1"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("store", "tfhub_cache", "work"))
    (copy / "envs.json").unlink()  # as an older harness wrote it: envs in summary.json only
    old = json.loads((copy / "summary.json").read_text())
    old["envs"]["tf221-tfkeras"]["env_vars"]["HUB_TOKEN"] = secret
    (copy / "summary.json").write_text(json.dumps(old))
    with open(copy / "records" / "private.gw0.jsonl", "w") as fh:
        rec = json.loads(records.splitlines()[0])
        fh.write(json.dumps(dict(rec, case_id=rec["case_id"] + "-private", outcome="error",
                                 message=f"Authorization: Bearer {secret}")) + "\n")
    matrix = yaml.safe_load((workdir / "matrix.yaml").read_text())
    env = next(e for e in matrix["envs"] if e["id"] == "tf221-tfkeras")
    env["env_vars"] = dict(env["env_vars"], HUB_TOKEN=secret)
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))
    proc = harness("report", "--matrix", str(tmp_path / "matrix.yaml"), str(copy))
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for name in PUBLISHED:
        text = (copy / name).read_text()
        assert _private_in(text, run_dir, port, (secret, str(copy), str(tmp_path))) == [], name
    rebuilt = json.loads((copy / "summary.json").read_text())
    assert rebuilt["envs"]["tf221-tfkeras"]["env_vars"] == {"TF_USE_LEGACY_KERAS": "1",
                                                            "HUB_TOKEN": "<hidden>"}
    assert "HUB_TOKEN=&lt;hidden&gt;" in (copy / "index.html").read_text()


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
    _, _, _, run_dir = first_run
    repro = {r["case_id"]: r for r in read_records(str(run_dir / "records"))}[
        CROSS_TF1_HUB]["repro"]
    argv = shlex.split(repro)
    assert argv[:4] == ["nox", "-s", "matrix", "--"]
    proc = harness("run", *argv[4:], "--run-id", "it2")  # the repro's own flags, verbatim
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(workdir / "reports" / "it2" / "results.jsonl") as fh:
        ids = [json.loads(line)["case_id"] for line in fh]
    assert ids == ["tf115/tf1/tf1_hub/create/hub.create_module_spec/mlp", CROSS_TF1_HUB]


def test_models_by_handle_through_the_hub_server(first_run):
    """The documents' calls on a URL, the cache, redirects and faults, in real envs."""
    _, records, summary, run_dir = first_run
    by_url = records["tf221-tfkeras/tf2/saved_model/load/hub.load-url/mlp@tf115/tf1"]
    assert by_url["outcome"] == "passed" and by_url["via"] == "url", by_url["message"]
    assert by_url["details"]["downloads"] == 1 and by_url["max_abs_err"] <= 1e-5
    module = records["tf115/tf1/tf1_hub/load/hub.Module-url/mlp@tf115/tf1"]
    assert module["outcome"] == "passed", module["message"]

    def download(env_mode, api):
        return records[f"{env_mode}/saved_model/download/{api}/mlp@{env_mode}"]

    cache = download("tf115/tf1", "cache-TFHUB_CACHE_DIR")  # hub 0.12, Python 3.7
    assert cache["outcome"] == "passed", cache["message"]
    assert cache["details"]["downloads"] == 1 and cache["details"]["hub_resolve"]
    both = download("tf221-tfkeras/compat", "two-processes-one-download")
    assert both["outcome"] == "passed", both["message"]
    assert both["details"]["downloads"] == 1 and both["details"]["overlap_s"] > 0
    # urllib follows 308 only from Python 3.11 on
    old = download("tf115/tf1", "redirect-308")
    assert old["outcome"] == "error" and "HTTP Error 308" in old["message"]
    assert download("tf221-tfkeras/tf2", "redirect-308")["outcome"] == "passed"
    assert download("tf221-tfkeras/tf2", "fault-truncated")["outcome"] == "passed"
    nested = download("tf221-tfkeras/tf2", "fault-nested")  # the cache keeps the bad download
    assert nested["outcome"] == "failed" and "still fails" in nested["message"]
    uncompressed = download("tf221-tfkeras/tf2", "TFHUB_MODEL_LOAD_FORMAT-UNCOMPRESSED")
    assert "Expected server to return a GCS location" in uncompressed["message"]
    cell = {(c["format"], c["operation"], c["column"]): c for c in summary["cells"]}
    assert cell[("saved_model", "load", "tf2")]["by_handle"]["passed"] >= 2
    assert {d["env_id"] for d in summary["downloads"]} == {"tf115", "tf221-tfkeras"}
    with open(run_dir / "hubserver.jsonl") as fh:
        log = [json.loads(line) for line in fh]
    assert any(e["format"] == "compressed" and e["status"] == 200 for e in log)
    assert "## By handle" in (run_dir / "compat.md").read_text()


@pytest.fixture(scope="module")
def served_model(first_run):
    """A model served the way the TF Hub hosting protocol does (?tf-hub-format=compressed)."""
    import http.server
    import io
    import tarfile
    import threading
    _, _, _, run_dir = first_run
    model = run_dir / "store" / "tf221-tfkeras" / "tf2" / "saved_model" / "mlp" / "model"
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        for path in sorted(model.rglob("*")):
            tar.add(str(path), arcname=str(path.relative_to(model)), recursive=False)
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            if self.path != "/models/served/1?tf-hub-format=compressed":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-tar")
            self.end_headers()
            self.wfile.write(blob.getvalue())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/models/served/1", hits
    server.shutdown()
    server.server_close()


def test_users_own_models_by_path_and_url(first_run, workdir, served_model):
    _, _, _, run_dir = first_run
    url, hits = served_model
    tf1_hub = run_dir / "store" / "tf115" / "tf1" / "tf1_hub" / "mlp" / "model"
    proc = harness("run", "--matrix", str(workdir / "matrix.yaml"), "--run-id", "mine",
                   "--env", "tf115,tf221-tfkeras", "--model", str(tf1_hub), "--model", url)
    out = workdir / "reports" / "mine"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "results.jsonl") as fh:
        records = {r["case_id"]: r for r in map(json.loads, fh)}
    assert {r["model"] for r in records.values() if r["model_kind"] == "user"} == {
        "model", "served-v1"}
    # the reference run is the first env x mode (matrix order) that could import it
    assert "model model: reference outputs from tf115/tf1" in proc.stdout
    module = records["tf221-tfkeras/compat/tf1_hub/load/hub.Module/model@tf115/tf1"]
    assert module["outcome"] == "error" and "has no attribute 'Module'" in module["message"]
    sig = records["tf221-tfkeras/tf2/tf1_hub/load/hub.load-signatures/model@tf115/tf1"]
    assert sig["outcome"] == "passed" and sig["max_abs_err"] <= 1e-5
    assert sig["details"]["signatures"] == ["default", "features", "tokens"]  # strings too
    # by URL: TF 1.15 cannot read a TF 2.21 model, so the reference is tf221-tfkeras/compat
    assert records["tf115/tf1/saved_model/create/import/served-v1"]["outcome"] == "error"
    served = records["tf221-tfkeras/tf2/saved_model/load/signatures/served-v1@"
                     "tf221-tfkeras/compat"]
    assert served["outcome"] == "passed", served["message"]
    tuned = records["tf221-tfkeras/tf2/saved_model/fine_tune/hub.KerasLayer-trainable-fit/"
                    "served-v1@tf221-tfkeras/compat"]
    assert tuned["outcome"] == "passed" and tuned["details"]["variables_changed"]
    tuned = {r["case_id"]: r for r in read_records(str(out / "records"))}[tuned["case_id"]]
    assert tuned["repro"] == (f"nox -s matrix -- --matrix {workdir / 'matrix.yaml'} "
                              f"--model {tf1_hub} --model {url} --case "
                              f"{tuned['case_id']}")
    assert any(p.endswith("tf-hub-format=compressed") for p in hits)
    assert any((out / "tfhub_cache").iterdir())  # downloaded into TFHUB_CACHE_DIR
    with open(out / "summary.json") as fh:
        summary = json.load(fh)
    assert {m["model"] for m in summary["user_models"]} == {"model", "served-v1"}
    assert all(c["attempted"] == 0 for c in summary["cells"])  # not the documents' table
    assert "## Your model `served-v1`" in (out / "compat.md").read_text()


def test_unreadable_user_model_is_one_line(workdir, tmp_path):
    proc = harness("run", "--matrix", str(workdir / "matrix.yaml"), "--model", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"--model {tmp_path}: {tmp_path} is not a SavedModel or TF1 Hub module" in proc.stderr
    gone = harness("run", "--matrix", str(workdir / "matrix.yaml"), "--model",
                   "http://127.0.0.1:9/nothing")
    assert gone.returncode == 2 and "cannot download http://127.0.0.1:9/nothing" in gone.stderr
