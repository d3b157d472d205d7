"""Real ``tensorflow_hub`` clients of two versions against ``harness.hubserver.HubServer``:
hub 0.12 on TF 1.15 (Python 3.7) and hub 0.16.1 on TF 2.21 (Python 3.12).

The environments are the matrix's own (``matrix.yaml``: ``tf115``, ``tf221-tfkeras``),
provisioned into the repo's ``.envs/`` by the pipeline's backend exactly as
``test_matrix_run.py``'s ``harness run`` does: a warm machine reuses them, CI makes them.
"""
import hashlib
import json
import os
import subprocess

import pytest

from harness import config
from harness.backends.venv import VenvBackend
from harness.hubserver import HubServer
from harness.wheel import build_wheel

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENVS = ("tf115", "tf221-tfkeras")  # hub 0.12.0 / TF 1.15.5 and hub 0.16.1 / TF 2.21.0
FILES = {
    "saved_model.pb": b"\x08\x01not really a saved model",
    "variables/variables.index": b"index",
    "variables/variables.data-00000-of-00001": os.urandom(4096),
    "assets/vocab.txt": b"a\nb\n",
}

# Runs inside the environments (Python 3.7+): one action, one JSON result line.
SCRIPT = r'''
import hashlib, json, os, sys

def files_of(top):
    found = {}
    for d, _, names in os.walk(top):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as fh:
                found[os.path.relpath(p, top).replace(os.sep, "/")] = hashlib.sha256(
                    fh.read()).hexdigest()
    return found

action, arg = sys.argv[1], sys.argv[2]
out = {}
try:
    import tensorflow as tf
    if action in ("make", "load") and not tf.executing_eagerly():
        tf.compat.v1.enable_eager_execution()  # TF 1.15: the TF2 API needs eager
    if action == "make":
        class Tiny(tf.Module):
            def __init__(self):
                super(Tiny, self).__init__()
                self.w = tf.Variable(3.0)

            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
            def __call__(self, x):
                return x * self.w

        tf.saved_model.save(Tiny(), arg)
        out["files"] = files_of(arg)
    else:
        import tensorflow_hub as hub
        out["hub"] = hub.__version__
        if action == "load":
            out["y"] = [float(v) for v in hub.load(arg)(tf.constant([1.0, 2.0])).numpy()]
        path = hub.resolve(arg)
        out["path"] = path
        out["files"] = files_of(path)
except Exception as exc:
    out["error_type"] = type(exc).__name__
    out["error"] = str(exc)
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def envs():
    """{env id: (Provisioned, env vars)} for ENVS, provisioned like the pipeline does."""
    matrix = config.load(os.path.join(ROOT, "matrix.yaml"))
    envs_dir = os.path.join(ROOT, ".envs")
    wheel, wid = build_wheel(os.path.join(envs_dir, ".wheels"))
    backend = VenvBackend(envs_dir, wheel, wid, log=print)
    found = {}
    for env_id in ENVS:
        env = matrix.env(env_id)
        found[env_id] = (backend.provision(env), dict(env.env_vars))
    return found


@pytest.fixture
def run_in(envs, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)

    def run(env_id, action, arg, cache, **extra):
        prov, env_vars = envs[env_id]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TFHUB_") and k.lower() not in ("http_proxy", "https_proxy")}
        env.update(env_vars)
        env.update(TFHUB_CACHE_DIR=str(cache), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **extra)
        proc = subprocess.run(prov.argv(str(script), action, arg), capture_output=True,
                              text=True, env=env, timeout=600)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(lines[-1][len("RESULT "):])
    return run


def fake_model(path):
    for rel, data in FILES.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


def digests(files):
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}


def compressed(srv):
    return [r for r in srv.requests() if r["format"] == "compressed"]


def test_two_hub_versions(envs):
    versions = {env_id: prov.versions["tensorflow-hub"] for env_id, (prov, _) in envs.items()}
    assert len(set(versions.values())) == 2, versions


@pytest.mark.parametrize("env_id", ENVS)
def test_resolve_downloads_once_into_the_cache(run_in, envs, tmp_path, env_id):
    model = fake_model(tmp_path / "model")
    cache = tmp_path / "cache"
    with HubServer(dirs={"m": model}) as srv:
        url = srv.url + "/m"
        first = run_in(env_id, "resolve", url, cache)
        assert "error" not in first, first
        assert first["hub"] == envs[env_id][0].versions["tensorflow-hub"]
        assert first["path"] == os.path.join(str(cache), hashlib.sha1(url.encode()).hexdigest())
        assert first["files"] == digests(FILES)
        got = compressed(srv)
        assert len(got) == 1 and len(srv.requests()) == 1
        assert got[0]["status"] == 200 and got[0]["target"] == "/m?tf-hub-format=compressed"
        again = run_in(env_id, "resolve", url, cache)  # a second process: from the cache
        assert again["path"] == first["path"] and again["files"] == first["files"]
        assert len(srv.requests()) == 1


@pytest.mark.parametrize("env_id", ENVS)
def test_hub_load_of_a_real_savedmodel(run_in, tmp_path, env_id):
    made = run_in(env_id, "make", str(tmp_path / "tiny"), tmp_path / "unused")
    assert "error" not in made and "saved_model.pb" in made["files"], made
    with HubServer(dirs={"tiny": tmp_path / "tiny"}) as srv:
        url = srv.url + "/tiny?version=1"  # a query already in the handle is kept
        loaded = run_in(env_id, "load", url, tmp_path / "cache")
        assert "error" not in loaded, loaded
        assert loaded["y"] == [3.0, 6.0]
        assert loaded["files"] == made["files"]
        got = compressed(srv)
        assert len(got) == 1 and got[0]["target"] == "/tiny?version=1&tf-hub-format=compressed"
        assert got[0]["bytes"] > 0


@pytest.mark.parametrize("env_id", ENVS)
def test_symlink_member_is_refused_by_the_client(run_in, tmp_path, env_id):
    model = fake_model(tmp_path / "model")
    with HubServer(dirs={"m": model}, faults=True) as srv:
        result = run_in(env_id, "resolve", srv.url + "/m?fault=symlink", tmp_path / "cache")
        assert result.get("error_type") == "ValueError", result
        assert "Unexpected object type" in result["error"]
        assert [r["fault"] for r in srv.requests()] == ["symlink"]
    assert not os.path.lexists(tmp_path / "cache" / "link-to-passwd")


@pytest.mark.parametrize("env_id", ENVS)
def test_uncompressed_needs_a_gcs_location(run_in, tmp_path, env_id):
    """The run's server (instrumented) answers the model root's path, which hub refuses."""
    model = fake_model(tmp_path / "model")
    with HubServer(dirs={"m": model}, instrument=True) as srv:
        result = run_in(env_id, "resolve", srv.url + "/m", tmp_path / "cache",
                        TFHUB_MODEL_LOAD_FORMAT="UNCOMPRESSED")
        assert result.get("error_type") == "ValueError", result
        assert "Expected server to return a GCS location" in result["error"]
        assert str(model) in result["error"]  # the 303's body: the model root's path
        assert [(r["status"], r["format"]) for r in srv.requests()] == [(303, "uncompressed")]


@pytest.mark.parametrize("env_id", ENVS)
def test_a_mirror_answers_uncompressed_with_advice_not_a_path(run_in, tmp_path, env_id):
    """A mirror (not instrumented) never shows a local path: hub's ValueError quotes its
    advice instead."""
    model = fake_model(tmp_path / "model")
    with HubServer(dirs={"m": model}) as srv:
        result = run_in(env_id, "resolve", srv.url + "/m", tmp_path / "cache",
                        TFHUB_MODEL_LOAD_FORMAT="UNCOMPRESSED")
        assert result.get("error_type") == "ValueError", result
        assert "Expected server to return a GCS location" in result["error"]
        assert "TFHUB_MODEL_LOAD_FORMAT=COMPRESSED or AUTO" in result["error"]
        assert str(tmp_path) not in result["error"]
        assert [(r["status"], r["format"]) for r in srv.requests()] == [(303, "uncompressed")]
