"""What a report publishes: no absolute host path (known roots to labels, a fallback for
the rest), no hub server port, no env var value or host name the matrix keeps private."""
from __future__ import annotations

import copy
import json
import os
import tempfile

import pytest
import yaml

from harness import config
from harness.errors import ConfigError
from harness.report import write_reports
from harness.report.redact import (
    HIDDEN,
    Redactor,
    for_run,
    published_envs,
    published_run,
)

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources")
ROOTS = [("/srv/proj", "<project>"), ("/srv/proj/reports", "<reports>"),
         ("/srv/proj/reports/r1", "<run>"), ("/srv/proj/.envs", "<envs>"),
         ("/opt/pyenv/versions/3.11.9", "<python>")]
BROAD = [("/opt/pyenv", "<pyenv>"), ("/scratch/tmp", "<tmp>"), ("/users/ann", "~")]
ENVS = {"/srv/proj/.envs/py3.12-abc": ["tf221-keras3", "tf221-tfkeras"],
        "/srv/proj/.envs/py3.7-def": ["tf115"]}


@pytest.fixture
def redactor():
    return Redactor(ROOTS, ENVS, hub_urls=["http://127.0.0.1:40245"],
                    secrets=["s3cr3t-token", "1"], hosts=["vm"], broad=BROAD)


@pytest.mark.parametrize("raw, published", [
    # an env's site-packages, with its id (a shared install: the record's own env first)
    ('File "/srv/proj/.envs/py3.7-def/lib/python3.7/site-packages/tensorflow/x.py", line 3',
     'File "<env:tf115>/site-packages/tensorflow/x.py", line 3'),
    ("/srv/proj/.envs/py3.12-abc/lib/python3.12/site-packages/tensorflow_hub/keras_layer.py",
     "<env:tf221-keras3>/site-packages/tensorflow_hub/keras_layer.py"),
    ("/srv/proj/.envs/py3.12-abc/bin/python", "<env:tf221-keras3>/bin/python"),
    ("/srv/proj/.envs/.wheels/h.whl", "<envs>/.wheels/h.whl"),
    # the run (its store), the reports directory, the project: the most specific root
    ("at: /srv/proj/reports/r1/store/tf115/tf1/saved_model/mlp/model.",
     "at: <run>/store/tf115/tf1/saved_model/mlp/model."),
    ("/srv/proj/reports/r0/summary.json", "<reports>/r0/summary.json"),
    ("/srv/proj/harness/stages.py", "<project>/harness/stages.py"),
    ("/srv/proj2/x and /srv/project", "/srv/proj2/x and /srv/project"),  # not that root
    # the interpreter's standard library, pyenv, temporary and home directories
    ("/opt/pyenv/versions/3.11.9/lib/python3.11/json/decoder.py",
     "<python>/lib/python3.11/json/decoder.py"),
    ("/opt/pyenv/shims/python", "<pyenv>/shims/python"),
    ("/opt/pyenv/versions/3.8.1/lib/python3.8/os.py", "<python>/lib/python3.8/os.py"),
    ("/users/ann/venv/lib/python3.8/site-packages/a.py", "<env>/site-packages/a.py"),
    ("cache /scratch/tmp/tfhub-compat-cache-5_k7/abc", "cache <tmp>/tfhub-compat-cache-5_k7/abc"),
    ("/users/ann/.cache/uv", "~/.cache/uv"),
    # fallbacks: paths of another machine or an unknown install
    ("/opt/venv/lib/python3.9/site-packages/numpy/core.py", "<env>/site-packages/numpy/core.py"),
    ("/usr/lib/python3/dist-packages/yaml/x.py", "<env>/site-packages/yaml/x.py"),
    ("/usr/local/lib/python3.10/threading.py", "<python>/lib/python3.10/threading.py"),
    ("/tmp/pytest-of-root/x and /var/tmp/y", "<tmp>/pytest-of-root/x and <tmp>/y"),
    ("/root/.pyenv and /home/bob/m", "~/.pyenv and ~/m"),
    ("/home/bob", "~"),
    # what is no host path stays
    *[(same, same) for same in ("/job:localhost/replica:0/task:0/device:CPU:0",
                                "tf115/tf1/saved_model/load/hub.load/mlp@tf115/tf1",
                                "/proc/self/status, /dev/shm", "a/tmp/b and x/root")],
    # the hub server's URL (and its bare host:port); another local server's stays
    ("OSError: http://127.0.0.1:40245/tf115/tf1/saved_model/mlp?fault=truncated is bad",
     "OSError: <hub>/tf115/tf1/saved_model/mlp?fault=truncated is bad"),
    ("connect to 127.0.0.1:40245 refused", "connect to <hub> refused"),
    ("http://127.0.0.1:9/nothing and 127.0.0.1:402451", "http://127.0.0.1:9/nothing and "
     "127.0.0.1:402451"),
    # private values: a secret env var's value, the host name (as a word only)
    ("token=s3cr3t-token;", f"token={HIDDEN};"),
    ("Op type not registered 'X' in binary running on vm. More", "Op type not registered "
     f"'X' in binary running on {HIDDEN}. More"),
    ("vmware, vm.max_map_count, kvm, vm-2", "vmware, vm.max_map_count, kvm, vm-2"),
    ("x = 1", "x = 1"),  # too short a secret to hide everywhere
])
def test_text(redactor, raw, published):
    assert redactor.text(raw) == published


def test_a_shared_install_is_labelled_with_the_records_env(redactor):
    path = "/srv/proj/.envs/py3.12-abc/lib/python3.12/site-packages/keras/x.py"
    assert redactor.text(path, "tf221-tfkeras") == "<env:tf221-tfkeras>/site-packages/keras/x.py"
    rec = {"env_id": "tf221-tfkeras", "traceback": path, "details": {path: [path, 1]}}
    assert redactor.record(rec) == {
        "env_id": "tf221-tfkeras", "traceback": "<env:tf221-tfkeras>/site-packages/keras/x.py",
        "details": {"<env:tf221-tfkeras>/site-packages/keras/x.py":
                    ["<env:tf221-tfkeras>/site-packages/keras/x.py", 1]}}


def test_tree_copies(redactor):
    value = {"a": ["/srv/proj/reports/r1/x", None, 1.5, True], "b": ("/tmp/q",)}
    before = copy.deepcopy(value)
    assert redactor.tree(value) == {"a": ["<run>/x", None, 1.5, True], "b": ["<tmp>/q"]}
    assert value == before


def test_a_root_given_through_a_symlink_is_known_by_both_names(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    r = Redactor([(str(tmp_path / "link"), "<run>")])
    assert r.text(f"{real}/a {tmp_path}/link/b") == "<run>/a <run>/b"


def _matrix(tmp_path, publish=None, extra_env_vars=None):
    with open(os.path.join(os.path.dirname(RESOURCES), "..", "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(envs_dir=str(tmp_path / "envs"), reports_dir=str(tmp_path / "reports"))
    if publish is not None:
        raw["settings"]["publish"] = publish
    for model in raw["models"]:
        model["definition"] = os.path.join(os.path.dirname(RESOURCES), "..", model["definition"])
    env = next(e for e in raw["envs"] if e["id"] == "tf221-tfkeras")
    env["env_vars"] = dict(env.get("env_vars") or {}, **(extra_env_vars or {}))
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    return config.load(str(path))


def test_for_run_knows_the_runs_roots(tmp_path):
    matrix = _matrix(tmp_path, extra_env_vars={"HUB_TOKEN": "tok-123456"})
    run_dir = tmp_path / "reports" / "r1"
    (run_dir / "plans").mkdir(parents=True)
    # the run was written elsewhere (a CI job) and its plan says where
    (run_dir / "plans" / "consume.tf115.tf1.json").write_text(json.dumps(
        {"store": "/ci/work/reports/r1/store", "results_dir": "/ci/work/reports/r1/records",
         "hub_url": "http://127.0.0.1:5555"}))
    location = tmp_path / "envs" / "py3.7-x"
    location.mkdir(parents=True)
    (location / "pyvenv.cfg").write_text("home = /opt/py/3.7.16/bin\nversion = 3.7.16\n")
    envs = {"tf115": {"location": "<envs>/py3.7-x"}, "tf221-tfkeras": {"env_vars": {
        "TF_USE_LEGACY_KERAS": "1", "HUB_TOKEN": HIDDEN}}}
    r = for_run(str(run_dir), str(tmp_path / "reports"), matrix, envs, hosts=["buildbox"])
    assert r.text("/ci/work/reports/r1/store/a") == "<run>/store/a"
    assert r.text(f"{run_dir}/store/a") == "<run>/store/a"
    assert r.text(f"{location}/lib/python3.7/site-packages/tensorflow/x.py") == \
        "<env:tf115>/site-packages/tensorflow/x.py"
    assert r.text("/opt/py/3.7.16/lib/python3.7/os.py") == "<python>/lib/python3.7/os.py"
    assert r.text("get http://127.0.0.1:5555/x") == "get <hub>/x"
    assert r.text("Bearer tok-123456 on buildbox") == f"Bearer {HIDDEN} on {HIDDEN}"
    assert r.text(f"{tempfile.gettempdir()}/zz") == "<tmp>/zz"
    assert r.text(os.path.expanduser("~/.cache/x")) == "~/.cache/x"
    public = for_run(str(run_dir), str(tmp_path / "reports"),
                     _matrix(tmp_path, {"host": True, "env_vars": ["HUB_TOKEN"]},
                             {"HUB_TOKEN": "tok-123456"}), envs, hosts=["buildbox"])
    assert public.text("Bearer tok-123456 on buildbox") == "Bearer tok-123456 on buildbox"


def test_published_run_and_envs(tmp_path):
    matrix = _matrix(tmp_path)
    publish = matrix.settings.publish
    assert publish == config.Publish(host=False, env_vars=("TF_USE_LEGACY_KERAS",))
    run = {"run_id": "r1", "host": "buildbox", "matrix": "/srv/proj/matrices/m.yaml"}
    assert published_run(run, publish, "/srv/proj") == {
        "run_id": "r1", "host": HIDDEN, "matrix": "matrices/m.yaml"}
    assert published_run(run, config.Publish(host=True), "/elsewhere") == {
        "run_id": "r1", "host": "buildbox", "matrix": "m.yaml"}
    envs = {"e": {"env_vars": {"TF_USE_LEGACY_KERAS": "1", "HUB_TOKEN": "tok"},
                  "location": str(tmp_path / "envs" / "py3.7-x")},
            "f": {"location": "/other/place/venv"}, "broken": {"provisioned": "error"}}
    out = published_envs(envs, publish, str(tmp_path / "envs"))
    assert out == {"e": {"env_vars": {"TF_USE_LEGACY_KERAS": "1", "HUB_TOKEN": HIDDEN},
                         "location": "<envs>/py3.7-x"},
                   "f": {"location": "venv"}, "broken": {"provisioned": "error"}}
    assert envs["e"]["env_vars"]["HUB_TOKEN"] == "tok"  # the caller's dict is left alone


@pytest.mark.parametrize("publish, error", [
    ({"hosts": True}, "settings.publish.hosts: unknown key; did you mean 'host'?"),
    ({"host": "yes"}, "settings.publish.host: expected bool, got a string 'yes'"),
    ({"env_vars": "TF_USE_LEGACY_KERAS"}, "settings.publish.env_vars: expected list"),
    ({"env_vars": ["1BAD"]}, "settings.publish.env_vars[0]: '1BAD' is not an env var name"),
    ([], "settings.publish: expected a mapping, got a list"),
])
def test_publish_setting_is_validated(tmp_path, publish, error):
    with pytest.raises(ConfigError) as exc:
        _matrix(tmp_path, publish)
    assert error in str(exc.value)


def test_published_files_of_a_run_hold_no_host_path(tmp_path):
    matrix = _matrix(tmp_path, extra_env_vars={"HUB_TOKEN": "tok-123456"})
    run_dir = tmp_path / "reports" / "r1"
    (run_dir / "plans").mkdir(parents=True)
    (run_dir / "plans" / "p.json").write_text(json.dumps({"hub_url": "http://127.0.0.1:40245"}))
    location = tmp_path / "envs" / "py3.12-abc"
    site = f"{location}/lib/python3.12/site-packages"
    with open(os.path.join(RESOURCES, "records.jsonl")) as fh:
        records = [json.loads(line) for line in fh]
    for rec in records[:5]:
        rec.update(outcome="error", error_type="OSError",
                   message=f"SavedModel file does not exist at: {run_dir}/store/tf115/tf1/x "
                           f"(http://127.0.0.1:40245/tf115/tf1/x; tok-123456; {tmp_path}/w)",
                   traceback=f'File "{site}/tensorflow_hub/resolver.py", line 1\n'
                             f'File "{os.path.expanduser("~")}/.pyenv/versions/3.12.3/lib/'
                             'python3.12/json/decoder.py", line 2\nOSError: x')
    (run_dir / "records").mkdir()
    raw = "".join(json.dumps(r) + "\n" for r in records)
    (run_dir / "records" / "a.gw0.jsonl").write_text(raw)
    run = {"run_id": "r1", "host": "buildbox", "matrix": matrix.path,
           "argv": ["--matrix", matrix.path]}
    envs = {"tf221-tfkeras": {"location": str(location), "env_vars": {
        "TF_USE_LEGACY_KERAS": "1", "HUB_TOKEN": "tok-123456"}}}
    summary = write_reports(str(run_dir), records, matrix, run, envs)
    assert summary["envs"]["tf221-tfkeras"]["env_vars"] == {"TF_USE_LEGACY_KERAS": "1",
                                                            "HUB_TOKEN": HIDDEN}
    assert summary["envs"]["tf221-tfkeras"]["location"] == "<envs>/py3.12-abc"
    assert summary["run"]["host"] == HIDDEN and summary["run"]["matrix"] == "matrix.yaml"
    for name in ("results.jsonl", "summary.json", "compat.md", "index.html"):
        text = (run_dir / name).read_text()
        for private in (str(tmp_path), "/tmp/", os.path.expanduser("~") + "/", "40245",
                        "tok-123456", "buildbox", site):
            assert private not in text, (name, private)
    results = (run_dir / "results.jsonl").read_text()
    assert "<env:tf221-tfkeras>/site-packages/tensorflow_hub/resolver.py" in results
    assert "<python>/lib/python3.12/json/decoder.py" in results
    assert "<run>/store/tf115/tf1/x" in results and "<hub>/tf115/tf1/x" in results
    assert (run_dir / "records" / "a.gw0.jsonl").read_text() == raw  # records stay raw


def test_private_values_never_garble_ids_keys_or_words_inside_words():
    r = Redactor(secrets=["tensorflow", "True"], hosts=["gpu"])
    rec = {"case_id": "gpu/tf2/saved_model/load/hub.load/mlp", "env_id": "gpu",
           "device": "gpu", "tensorflow": "2.15.1",
           "message": "No module named tensorflow on gpu (tensorflow_hub: m(x, training=True))",
           "details": {"tensorflow": "tensorflow"}}
    out = r.record(rec)
    assert {k: out[k] for k in ("case_id", "env_id", "device", "tensorflow")} == \
        {k: rec[k] for k in ("case_id", "env_id", "device", "tensorflow")}
    assert out["message"] == ("No module named <hidden> on <hidden> (tensorflow_hub: "
                              "m(x, training=<hidden>))")
    assert out["details"] == {"tensorflow": "<hidden>"}  # keys stay
