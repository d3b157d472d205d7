"""Hostile input to a real ``harness run`` process: users' archives and servers that
misbehave (a traversal member, a gzip bomb, a trickling server) and a matrix with an env
whose Python is not installed. Each is one line, exit 2 (or env_error records and exit 1),
no traceback, quickly; none of them needs a TensorFlow env, so they carry no marker."""
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20


def _targz(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _bomb():
    """saved_model.pb and 2 GiB of zero variables, gzip'd on the fly (one compressed MiB of
    zeros, repeated after full flushes): the client's reading stops the stream."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    pb, data = tarfile.TarInfo("saved_model.pb"), tarfile.TarInfo("variables/variables.data")
    pb.size, data.size = 2, 2 << 30
    yield z.compress(pb.tobuf() + b"\x08\x01" + bytes(510) + data.tobuf()) + z.flush(
        zlib.Z_FULL_FLUSH)
    fresh = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = fresh.compress(bytes(MiB)) + fresh.flush(zlib.Z_FULL_FLUSH)
    for _ in range(2048):
        yield chunk  # (the stream stops being valid gzip here: never read that far)


def _serve(respond):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            try:
                respond(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads, httpd.block_on_close = True, False
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def _archive(body):
    def respond(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return respond


def _stream(chunks):
    def respond(h):
        h.send_response(200)
        h.end_headers()
        for chunk in chunks():
            h.wfile.write(chunk)
    return respond


def _trickle(h):
    """A real model archive, one byte every 0.5 s: no single recv() ever times out."""
    body = _targz(("saved_model.pb", b"\x08\x01"))
    h.send_response(200)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    for i in range(len(body)):
        h.wfile.write(body[i:i + 1])
        h.wfile.flush()
        time.sleep(0.5)


def _matrix(tmp_path, fetch=None, extra_envs=()):
    with open(os.path.join(ROOT, "matrix.yaml")) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(reports_dir=str(tmp_path / "reports"),
                           envs_dir=str(tmp_path / "envs"))
    if fetch:
        raw["settings"]["fetch"] = fetch
    for model in raw["models"]:
        model["definition"] = os.path.join(ROOT, model["definition"])
    raw["envs"] = [e for e in raw["envs"] if e["id"] == "tf115"] + list(extra_envs)
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _harness(*args, timeout=120):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


@pytest.mark.parametrize("respond, fetch, message, within", [
    (_archive(_targz(("saved_model.pb", b"\x08\x01"), ("../evil", b"x"))), None,
     "archive member '../evil' would land outside the model directory; refusing it", 0),
    (_stream(_bomb), None, "the archive inflates more than 100x (256 MiB from", 10),
    (_trickle, {"deadline_s": 3}, "the download did not finish within its deadline (3 s;", 3),
], ids=["traversal", "gzip-bomb", "trickle"])
def test_model_url_is_one_line_exit_2(tmp_path, respond, fetch, message, within):
    httpd, url = _serve(respond)
    try:
        proc, seconds = _harness("run", "--matrix", str(_matrix(tmp_path, fetch)),
                                 "--model", url + "/my-model/1")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: --model {url}/my-model/1: {message}"), proc.stderr
    assert seconds < within + 15  # (the process's start-up, on a loaded machine)
    assert not (tmp_path / "reports").exists()  # refused before the run began


def test_missing_interpreter_is_env_error_and_the_run_goes_on(tmp_path):
    """A run of the one env whose Python is not installed: its cases are env_error records
    naming the version and ``pyenv install``, the report is written, exit 1."""
    py34 = {"id": "py34", "python": "3.4", "packages": ["tensorflow==1.15.5"], "modes": ["tf1"]}
    matrix = _matrix(tmp_path, extra_envs=[py34])
    proc, _ = _harness("validate", "--matrix", str(matrix))
    assert proc.returncode == 0 and "envs[1] (py34): Python 3.4 is not installed" in proc.stderr
    proc, _ = _harness("run", "--matrix", str(matrix), "--env", "py34", "--run-id", "r",
                       timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    with open(tmp_path / "reports" / "r" / "results.jsonl") as fh:
        records = [json.loads(line) for line in fh]
    assert records and {r["env_id"] for r in records} == {"py34"}
    assert {r["outcome"] for r in records} == {"env_error"}
    assert all("Python 3.4 is not installed here" in r["message"]
               and "pyenv install 3.4" in r["message"] for r in records)
