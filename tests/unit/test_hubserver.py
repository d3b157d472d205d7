"""The local TF Hub server (``harness.hubserver``): a real server in a thread, real urllib
and http.client clients, small fake model roots in tmp dirs."""
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness.cli import main
from harness.errors import UserError
from harness.hubserver import HubServer, latest_store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = {
    "saved_model.pb": b"\x08\x01fake saved model",
    "variables/variables.index": b"index bytes",
    "variables/variables.data-00000-of-00001": bytes(range(256)) * 64,
    "assets/vocab.txt": b"hello\nworld\n",
}
DIRS = ["assets", "assets/empty", "variables"]
NAMES = DIRS + sorted(FILES)  # directories, then files, each sorted


def make_model(path, files=FILES):
    for rel, data in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (path / "assets" / "empty").mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "models" / "enc")


@pytest.fixture
def server(tmp_path, model):
    """As a harness run's server: faults, a log, the instrumentation."""
    with HubServer(dirs={"m": model}, faults=True, cache_dir=tmp_path / "cache",
                   log_path=tmp_path / "requests.jsonl", instrument=True) as srv:
        yield srv


@pytest.fixture
def mirror(tmp_path, model):
    """As ``harness serve`` without --instrument (an offline mirror)."""
    with HubServer(dirs={"m": model}, cache_dir=tmp_path / "mirror-cache") as srv:
        yield srv


def fetch(url, method="GET", follow=True):
    """(status, headers, body) of a request; HTTP errors are answers too."""
    handlers = [urllib.request.ProxyHandler({})]
    if not follow:
        handlers.append(_NoRedirect())
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, method=method), timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def raw_get(srv, target, method="GET"):
    """A request with exactly this target (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def members(body):
    """(name, type, data) of every member, read the way tensorflow_hub does (streamed)."""
    found = []
    with tarfile.open(fileobj=io.BytesIO(body), mode="r|*") as tar:
        for info in tar:
            data = tar.extractfile(info).read() if info.isfile() else None
            found.append((info.name, info.type, data))
    return found


def check_model_archive(body, files=FILES, prefix=""):
    got = members(body)
    assert [name for name, _, _ in got] == [prefix + n for n in DIRS + sorted(files)]
    assert all(kind in (tarfile.DIRTYPE, tarfile.REGTYPE) for _, kind, _ in got)
    assert {n: d for n, _, d in got if d is not None} == {prefix + k: v for k, v in files.items()}


def with_format(handle, value="compressed"):
    """What tensorflow_hub requests: ("tf-hub-format", value) appended to the handle's query."""
    parsed = list(urllib.parse.urlparse(handle))
    qsl = urllib.parse.parse_qsl(parsed[4])
    qsl.append(("tf-hub-format", value))
    parsed[4] = urllib.parse.urlencode(qsl)
    return urllib.parse.urlunparse(parsed)


# ---- the protocol ----------------------------------------------------------------------

def test_compressed_archive_holds_exactly_the_model(server):
    status, headers, body = fetch(with_format(server.url + "/m"))
    assert status == 200
    assert headers["Content-Type"] in ("application/gzip", "application/x-tar+gzip")
    assert int(headers["Content-Length"]) == len(body)
    check_model_archive(body)
    raw = tarfile.open(fileobj=io.BytesIO(body))  # raw names: directories end with "/"
    assert [m.name for m in raw.getmembers()][:3] == ["assets", "assets/empty", "variables"]
    assert server.url == f"http://127.0.0.1:{server.port}" and not server.url.endswith("/")


def test_extra_query_params_are_kept_and_ignored(server):
    _, _, plain = fetch(with_format(server.url + "/m"))
    status, _, body = fetch(with_format(server.url + "/m?version=2&x=a%20b"))
    assert status == 200 and body == plain
    assert server.requests()[-1]["target"] == "/m?version=2&x=a+b&tf-hub-format=compressed"


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz"])
def test_tar_gz_url_is_the_same_archive(server, suffix):
    _, _, compressed = fetch(with_format(server.url + "/m"))
    status, headers, body = fetch(server.url + "/m" + suffix)
    assert status == 200 and body == compressed
    assert headers["Content-Type"] == "application/gzip"


def test_store_entry_is_served_as_its_model_dir(tmp_path):
    store = tmp_path / "store"
    entry = store / "tf115" / "tf1" / "saved_model" / "mlp"
    make_model(entry / "model")
    (entry / "manifest.json").write_text("{}")
    (entry / "golden.npz").write_bytes(b"npz")
    make_model(store / "tf221" / "tf2" / "tf1_hub" / "mlp.refvars",
               {**FILES, "tfhub_module.pb": b"module"})
    with HubServer(store=store, instrument=True) as srv:
        status, _, body = fetch(with_format(srv.url + "/tf115/tf1/saved_model/mlp"))
        assert status == 200
        check_model_archive(body)  # model/'s content: no manifest.json, no golden.npz
        status, _, body = fetch(srv.url + "/tf221/tf2/tf1_hub/mlp.refvars.tar.gz")
        assert status == 200 and "tfhub_module.pb" in [n for n, _, _ in members(body)]
        assert fetch(srv.url + "/tf115/tf1/saved_model/mlp/saved_model.pb")[2] == \
            FILES["saved_model.pb"]
        assert fetch(srv.url + "/tf115/tf1/saved_model/mlp/manifest.json")[0] == 404
        assert fetch(with_format(srv.url + "/tf115/tf1"))[0] == 404  # not a model
        status, _, page = fetch(srv.url + "/tf115/")
        assert status == 200 and b"/tf115/tf1/saved_model/mlp" in page
        _, _, listing = fetch(srv.url + "/_harness/models")
    assert json.loads(listing)["models"] == [
        {"url": srv.url + "/tf115/tf1/saved_model/mlp", "path": str(entry / "model")},
        {"url": srv.url + "/tf221/tf2/tf1_hub/mlp.refvars",
         "path": str(store / "tf221" / "tf2" / "tf1_hub" / "mlp.refvars")}]


def test_a_named_dir_can_be_a_model_root_or_hold_models(tmp_path, model):
    other = make_model(tmp_path / "zoo" / "b" / "2")
    with HubServer(dirs={"m": model, "zoo": tmp_path / "zoo"}) as srv:
        assert [m["url"] for m in srv.models()] == [srv.url + "/m", srv.url + "/zoo/b/2"]
        assert fetch(with_format(srv.url + "/zoo/b/2"))[0] == 200
        assert srv.models()[1]["path"] == str(other)
        assert fetch(srv.url + "/nothing")[0] == 404


def test_uncompressed_answers_303_with_the_path_as_body(server, model):
    status, headers, body = fetch(with_format(server.url + "/m", "uncompressed"), follow=False)
    assert status == 303
    assert headers["Location"] == "file://" + str(model)
    assert body.decode() == str(model)
    # what tensorflow_hub does: plain urlopen; urllib refuses to follow file:// and raises
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(with_format(server.url + "/m", "uncompressed"), timeout=30)
    with info.value as error:
        assert error.code == 303 and error.read().decode() == str(model)
    assert server.requests()[-1]["format"] == "uncompressed"


def test_unknown_format_is_400(server):
    assert fetch(with_format(server.url + "/m", "zip"))[0] == 400


def test_index_and_raw_files(server):
    status, headers, page = fetch(server.url + "/m")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for rel in FILES:
        assert f'href="/m/{rel}"'.encode() in page
    assert b'href="/m?tf-hub-format=compressed"' in page
    for rel, data in FILES.items():
        status, headers, body = fetch(server.url + "/m/" + rel)
        assert status == 200 and body == data and int(headers["Content-Length"]) == len(data)
    assert fetch(server.url + "/m/variables")[0] == 404  # a directory is not a file
    assert fetch(server.url + "/m/missing.txt")[0] == 404


def test_head_is_get_without_a_body(server):
    for url in (with_format(server.url + "/m"), server.url + "/m", server.url + "/m.tgz",
                server.url + "/m/saved_model.pb"):
        _, get_headers, body = fetch(url)
        status, headers, empty = fetch(url, method="HEAD")
        assert status == 200 and empty == b""
        assert headers["Content-Length"] == get_headers["Content-Length"] == str(len(body))
        assert headers["Content-Type"] == get_headers["Content-Type"]
    assert server.requests()[-1]["method"] == "HEAD" and server.requests()[-1]["bytes"] == 0


def test_keep_alive_serves_several_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        bodies = []
        for target in ("/m/saved_model.pb", "/m?tf-hub-format=compressed", "/nope",
                       "/m/assets/vocab.txt"):
            conn.request("GET", target)
            resp = conn.getresponse()
            bodies.append((resp.status, resp.read()))
    finally:
        conn.close()
    assert [s for s, _ in bodies] == [200, 200, 404, 200]
    assert bodies[3][1] == FILES["assets/vocab.txt"]


# ---- redirects -------------------------------------------------------------------------

@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects(server, code):
    target = f"/_redirect/{code}/m?tf-hub-format=compressed&token=abc"
    status, headers, _ = fetch(server.url + target, follow=False)
    assert status == code and headers["Location"] == "/m?tf-hub-format=compressed&token=abc"
    if code == 308 and sys.version_info < (3, 11):
        pytest.skip("urllib follows 308 from Python 3.11")
    status, _, body = fetch(server.url + target)  # urllib follows it
    assert status == 200
    check_model_archive(body)
    assert [(r["status"], r["path"]) for r in server.requests("token=abc")][-2:] == [
        (code, f"/_redirect/{code}/m"), (200, "/m")]


@pytest.mark.parametrize("target", ["/_redirect/200/m", "/_redirect/304/m", "/_redirect/x/m",
                                    "/_redirect/301", "/_redirect/301//evil.example/x",
                                    "/_redirect/302/../etc/passwd"])
def test_bad_redirects_are_404(server, target):
    assert raw_get(server, target)[0] == 404


# ---- security --------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/m/../../secret.txt", "/m/%2e%2e/%2e%2e/secret.txt", "/m/%2E%2E%2Fsecret.txt",
    "//etc/passwd", "/m//saved_model.pb", "/m/..%5c..%5csecret.txt", "/m\\..\\secret.txt",
    "/m/saved_model.pb%00", "/m/./saved_model.pb", "http://127.0.0.1/m/saved_model.pb",
    "/m/%2fetc%2fpasswd",
])
def test_traversal_is_refused(server, tmp_path, target):
    (tmp_path / "models" / "secret.txt").write_text("secret")
    status, body = raw_get(server, target)
    assert status == 404 and b"secret" not in body and b"root:" not in body


def test_symlink_component_is_refused(tmp_path, model):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "linked").symlink_to(model)
    (zoo / "real").mkdir()
    (zoo / "real" / "passwd").symlink_to("/etc/passwd")
    with HubServer(dirs={"zoo": zoo}) as srv:
        assert fetch(with_format(srv.url + "/zoo/linked"))[0] == 403
        assert fetch(srv.url + "/zoo/linked/saved_model.pb")[0] == 403
        assert srv.models() == []  # symlinks are never followed, not even to list


def test_model_with_a_symlink_inside_is_refused(tmp_path, model):
    (model / "assets" / "passwd").symlink_to("/etc/passwd")
    with HubServer(dirs={"m": model}) as srv:
        for url in (with_format(srv.url + "/m"), srv.url + "/m.tar.gz", srv.url + "/m",
                    with_format(srv.url + "/m", "uncompressed"), srv.url + "/m/saved_model.pb",
                    srv.url + "/m/assets/passwd"):
            status, _, body = fetch(url, follow=False)
            assert status == 403, url
            assert b"root:" not in body
        assert b"assets/passwd" in fetch(with_format(srv.url + "/m"))[2]  # names it
        assert srv.builds == []


def test_file_outside_a_model_is_not_served(tmp_path, model):
    (tmp_path / "models" / "notes.txt").write_text("not a model file")
    with HubServer(dirs={"models": tmp_path / "models"}) as srv:
        assert fetch(srv.url + "/models/notes.txt")[0] == 404
        assert fetch(srv.url + "/models/enc/saved_model.pb")[0] == 200


@pytest.mark.parametrize("name", ["_harness", "_x", "a/b", ""])
def test_reserved_dir_names_are_user_errors(model, name):
    with pytest.raises(UserError, match="NAME"):
        HubServer(dirs={name: model})


def test_non_loopback_host_warns(model, capsys):
    with HubServer(dirs={"m": model}, host="0.0.0.0"):
        pass
    err = capsys.readouterr().err
    assert err.startswith("warning: serving on 0.0.0.0:") and err.count("\n") == 1


# ---- faults ----------------------------------------------------------------------------

def test_fault_404_and_tokens(server):
    url = with_format(server.url + "/m?fault=404&fault-token=t1&fault-times=2")
    assert [fetch(url)[0] for _ in range(3)] == [404, 404, 200]
    assert [r["fault"] for r in server.requests("fault-token=t1")] == ["404", "404", None]
    other = with_format(server.url + "/m?fault=404&fault-token=t2")  # its own count
    assert [fetch(other)[0] for _ in range(2)] == [404, 200]
    no_token = with_format(server.url + "/m?fault=404")
    assert [fetch(no_token)[0] for _ in range(3)] == [404, 404, 404]


def test_fault_not_tar(server):
    status, headers, body = fetch(with_format(server.url + "/m?fault=not-tar"))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body.startswith(b"<html>") and b"not a model" in body
    with pytest.raises(tarfile.ReadError):
        members(body)


def test_fault_truncated(server):
    _, _, full = fetch(with_format(server.url + "/m"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/m?fault=truncated&tf-hub-format=compressed")
        resp = conn.getresponse()
        assert resp.status == 200 and int(resp.getheader("Content-Length")) == len(full)
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
    finally:
        conn.close()
    assert info.value.partial == full[:len(full) // 2]
    entry = server.requests("fault=truncated")[-1]
    assert entry["fault"] == "truncated" and entry["bytes"] == len(full) // 2


def test_fault_nested(server):
    _, _, body = fetch(with_format(server.url + "/m?fault=nested"))
    got = members(body)
    assert got[0][:2] == ("enc", tarfile.DIRTYPE)
    assert all(name == "enc" or name.startswith("enc/") for name, _, _ in got)
    assert [n for n, _, _ in got[1:]] == ["enc/" + n for n in NAMES]
    assert {n: d for n, _, d in got if d is not None} == {"enc/" + k: v for k, v in FILES.items()}


def test_fault_symlink_is_built_without_a_symlink_on_disk(server, tmp_path):
    _, _, body = fetch(with_format(server.url + "/m?fault=symlink"))
    raw = tarfile.open(fileobj=io.BytesIO(body))
    link = raw.getmember("link-to-passwd")
    assert link.issym() and link.linkname == "/etc/passwd"
    assert [m.name for m in raw.getmembers()] == NAMES + ["link-to-passwd"]
    on_disk = [os.path.join(d, n) for d, ds, fs in os.walk(tmp_path) for n in ds + fs]
    assert not any(os.path.islink(p) for p in on_disk)
    with pytest.raises(ValueError, match="Unexpected object type"):  # what hub's extractor does
        for _, kind, _ in members(body):
            if kind not in (tarfile.DIRTYPE, tarfile.REGTYPE):
                raise ValueError("Unexpected object type in tar archive: %s" % kind)


def test_fault_slow(server):
    _, _, plain = fetch(with_format(server.url + "/m"))
    started = time.monotonic()
    status, _, body = fetch(with_format(server.url + "/m?fault=slow&fault-delay=0.6"))
    assert status == 200 and body == plain and time.monotonic() - started >= 0.6
    assert server.requests("fault=slow")[-1]["duration_s"] >= 0.6


@pytest.mark.parametrize("query, message", [
    ("fault=boom", b"unknown fault"), ("fault=slow&fault-delay=11", b"fault-delay"),
    ("fault=404&fault-times=x", b"fault-times"), ("fault=slow&fault-delay=nan", b"fault-delay"),
])
def test_bad_fault_requests_are_400(server, query, message):
    status, _, body = fetch(with_format(f"{server.url}/m?{query}"))
    assert status == 400 and message in body


def test_faults_disabled(model):
    with HubServer(dirs={"m": model}) as srv:
        status, _, body = fetch(with_format(srv.url + "/m?fault=404"))
        assert status == 400 and b"faults are disabled" in body
        assert srv.requests()[-1]["status"] == 400


# ---- the request log -------------------------------------------------------------------

def test_request_log(server, tmp_path):
    fetch(with_format(server.url + "/m?case=one"))
    fetch(server.url + "/m/saved_model.pb")
    fetch(server.url + "/nothing")
    assert fetch(server.url + "/_harness/health")[2] == b"ok\n"
    log = server.requests()
    assert [(e["method"], e["path"], e["status"], e["format"]) for e in log] == [
        ("GET", "/m", 200, "compressed"), ("GET", "/m/saved_model.pb", 200, None),
        ("GET", "/nothing", 404, None)]
    first = log[0]
    assert set(first) == {"time", "client", "method", "target", "path", "status", "bytes",
                          "format", "fault", "duration_s"}
    assert first["client"] == "127.0.0.1" and first["fault"] is None
    assert first["target"] == "/m?case=one&tf-hub-format=compressed"
    assert first["bytes"] == len(fetch(server.url + "/m.tar.gz")[2])
    assert log[1]["bytes"] == len(FILES["saved_model.pb"])
    assert [e["target"] for e in server.requests("case=one")] == [first["target"]]
    _, _, body = fetch(server.url + "/_harness/requests?contains=case%3Done")
    assert json.loads(body) == {"requests": [first]}
    assert len(json.loads(fetch(server.url + "/_harness/requests")[2])["requests"]) == 4
    with open(tmp_path / "requests.jsonl") as fh:
        lines = [json.loads(line) for line in fh]
    assert lines == server.requests()  # /_harness/ is never logged
    assert fetch(server.url + "/_harness/nope")[0] == 404


def test_harness_models(server, model):
    _, headers, body = fetch(server.url + "/_harness/models")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"models": [{"url": server.url + "/m", "path": str(model)}]}


# ---- archives: built once, rebuilt on change -------------------------------------------

def test_concurrent_clients_get_identical_bytes_and_one_build(server, tmp_path):
    url = with_format(server.url + "/m")
    results = [None] * 16
    barrier = threading.Barrier(16)

    def client(i):
        barrier.wait()
        results[i] = fetch(url)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None and r[0] == 200 for r in results)
    assert len({r[2] for r in results}) == 1
    check_model_archive(results[0][2])
    assert len(server.builds) == 1
    assert len(os.listdir(tmp_path / "cache" / "archives")) == 1


def test_archive_rebuilt_after_a_file_changes(server, model, tmp_path):
    url = with_format(server.url + "/m")
    first = fetch(url)[2]
    assert fetch(url)[2] == first and len(server.builds) == 1
    (model / "assets" / "vocab.txt").write_bytes(b"changed vocabulary\n")
    second = fetch(url)[2]
    assert second != first and len(server.builds) == 2
    check_model_archive(second, {**FILES, "assets/vocab.txt": b"changed vocabulary\n"})
    archives = os.listdir(tmp_path / "cache" / "archives")
    root = hashlib.sha1(str(model).encode()).hexdigest()
    assert len(archives) == 1 and archives[0].startswith(root + "-")  # the old one is gone


def test_default_cache_dir_is_removed_on_stop(model):
    srv = HubServer(dirs={"m": model}).start()
    fetch(with_format(srv.url + "/m"))
    cache = srv.archives.directory
    assert os.listdir(cache)
    srv.stop()
    assert not os.path.exists(cache)


# ---- harness serve ---------------------------------------------------------------------

def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_errors(capsys, tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)  # no reports/ here
    assert "nothing to serve" in _one_line_error(capsys, ["serve"])
    (tmp_path / "reports" / "latest").mkdir(parents=True)
    (tmp_path / "reports" / "latest" / "RUN").write_text("r7\n")
    assert latest_store() == os.path.join("reports", "r7", "store")
    assert "--store" in _one_line_error(capsys, ["serve", "--store", str(tmp_path / "no")])
    assert "--dir nonsense: expected NAME=PATH" in _one_line_error(
        capsys, ["serve", "--dir", "nonsense"])
    assert "--dir x=" in _one_line_error(capsys, ["serve", "--dir", f"x={tmp_path / 'no'}"])
    assert "--dir _x=" in _one_line_error(capsys, ["serve", "--dir", f"_x={model}"])
    assert "given twice" in _one_line_error(
        capsys, ["serve", "--dir", f"a={model}", "--dir", f"a={model}"])
    assert "--port abc" in _one_line_error(capsys, ["serve", "--dir", f"a={model}",
                                                    "--port", "abc"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        err = _one_line_error(capsys, ["serve", "--dir", f"a={model}", "--port", str(port)])
    assert f"--port {port}" in err and "cannot listen" in err


def test_cli_serves_until_ctrl_c(tmp_path, model):
    """`harness serve` prints its URL and models, serves, and Ctrl-C is a clean exit 0."""
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "--dir", f"m={model}",
                             "--log", str(log), "--cache", str(tmp_path / "c")],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving 1 models at http://127.0.0.1:"), first
        assert first.rstrip().endswith("/ (Ctrl-C to stop)")
        url = first.split()[4].rstrip("/")
        assert proc.stdout.readline().strip() == url + "/m"
        check_model_archive(fetch(with_format(url + "/m"))[2])
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert [json.loads(line)["path"] for line in log.read_text().splitlines()] == ["/m"]
    assert os.listdir(tmp_path / "c" / "archives")  # --cache is kept


def test_cli_lists_at_most_30_models(tmp_path, capsys, monkeypatch):
    for i in range(32):
        make_model(tmp_path / "zoo" / f"m{i:02d}", {"saved_model.pb": b"x"})

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(HubServer, "serve_forever", interrupt)
    monkeypatch.chdir(tmp_path)  # no reports/ here
    assert main(["serve", "--dir", f"zoo={tmp_path / 'zoo'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("serving 32 models at http://127.0.0.1:")
    assert len(lines) == 32 and lines[-1] == "  … and 2 more"
