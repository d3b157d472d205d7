"""The local TF Hub server (``harness.hubserver``): a real server in a thread, real urllib
and http.client clients, small fake model roots in tmp dirs."""
import contextlib
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
from integration.runs import default_signals, stop  # (tests/ is the packages' base)

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


# ---- mirror mode: no instrumentation, no local path ------------------------------------

@pytest.mark.parametrize("path", ["/_harness/health", "/_harness/requests",
                                  "/_harness/requests?contains=m", "/_harness/models",
                                  "/_harness/nope", "/_harness"])
def test_mirror_hides_the_instrumentation(mirror, path):
    for method in ("GET", "HEAD"):
        status, _, body = fetch(mirror.url + path, method=method)
        assert status == 404, (method, path)
    assert b"instrumentation" in fetch(mirror.url + path)[2]


def test_mirror_answers_uncompressed_without_a_path(mirror, tmp_path):
    status, headers, body = fetch(with_format(mirror.url + "/m", "uncompressed"), follow=False)
    assert status == 303 and headers["Location"] is None
    assert body == b"this server does not serve uncompressed models (no gs:// location): " \
                   b"load with TFHUB_MODEL_LOAD_FORMAT=COMPRESSED or AUTO (the default)\n"
    # what tensorflow_hub reads: the 303's body (its ValueError then quotes this message)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(with_format(mirror.url + "/m", "uncompressed"), timeout=30)
    with info.value as error:
        assert error.code == 303 and b"TFHUB_MODEL_LOAD_FORMAT" in error.read()
    for url in (mirror.url + "/", mirror.url + "/m", with_format(mirror.url + "/m"),
                mirror.url + "/m.tar.gz", mirror.url + "/nothing", mirror.url + "/m/x",
                with_format(mirror.url + "/m?fault=404"), mirror.url + "/_redirect/303/m"):
        _, headers, body = fetch(url, follow=False)
        shown = body + str(headers).encode()
        assert str(tmp_path).encode() not in shown, url


def test_instrumentation_needs_a_loopback_host_header(server, model):
    """An instrumented server still hides it from a request whose Host is not loopback (a
    web page that rebinds its own name to 127.0.0.1)."""
    for host, shown in (("evil.example", False), (f"evil.example:{server.port}", False),
                        (f"127.0.0.1:{server.port}", True), ("localhost", True),
                        (f"[::1]:{server.port}", True)):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("GET", "/_harness/models", headers={"Host": host})
            resp = conn.getresponse()
            assert (resp.status, str(model).encode() in resp.read()) == (
                (200, True) if shown else (404, False)), host
            conn.request("GET", "/m?tf-hub-format=uncompressed", headers={"Host": host})
            resp = conn.getresponse()
            assert (str(model).encode() in resp.read()) == shown
            assert (resp.getheader("Location") is not None) == shown
            conn.request("GET", "/_harness/health", headers={"Host": host})
            resp = conn.getresponse()
            assert resp.status == (200 if shown else 404) and resp.read()
        finally:
            conn.close()


def test_instrumentation_is_for_loopback_clients_only(server, mirror):
    assert server.instrumented(("127.0.0.1", 5), None)
    assert server.instrumented(("127.3.4.5", 5), "127.0.0.1:80")
    assert server.instrumented(("::1", 5, 0, 0), "[::1]:80")
    assert server.instrumented(("::ffff:127.0.0.1", 5, 0, 0), "localhost:80")
    assert not server.instrumented(("192.0.2.7", 5), None)
    assert not server.instrumented(("::ffff:192.0.2.7", 5, 0, 0), "127.0.0.1")
    assert not server.instrumented(("10.1.2.3", 5), "127.0.0.1")
    assert not server.instrumented(("127.0.0.1", 5), "mirror.internal:8765")
    assert not mirror.instrumented(("127.0.0.1", 5), "127.0.0.1")


def test_internal_errors_name_no_path_unless_instrumented(server, mirror, monkeypatch, capfd):
    def unreadable(root, url=""):
        raise PermissionError(13, "Permission denied", "/secret/place/saved_model.pb")

    monkeypatch.setattr("harness.hubserver.scan_model", unreadable)
    status, _, body = fetch(with_format(mirror.url + "/m"))
    assert status == 500 and b"/secret" not in body and b"PermissionError" in body
    status, _, body = fetch(with_format(server.url + "/m"))
    assert status == 500 and b"/secret/place/saved_model.pb" in body
    assert "PermissionError" in capfd.readouterr().err  # the traceback: in the server's output


def test_the_runtime_reads_the_instrumented_server(server, mirror):
    """What the stage processes ask the run's server: its health, and its log by token."""
    from types import SimpleNamespace

    from harness.runtime.formats.handle import TOKEN, downloads
    from harness.runtime.plugin import hub_server_down
    assert hub_server_down(server.url) is None
    assert "404" in hub_server_down(mirror.url)  # a mirror is no run's server
    fetch(with_format(f"{server.url}/m?{TOKEN}=t123"))
    got = downloads(SimpleNamespace(hub_url=server.url), "t123")
    assert [(r["path"], r["status"]) for r in got] == [("/m", 200)]


def test_a_mirror_keeps_only_the_last_requests_in_memory(tmp_path, model, monkeypatch):
    monkeypatch.setattr("harness.hubserver.KEPT_REQUESTS", 10)
    log = tmp_path / "mirror.jsonl"
    with HubServer(dirs={"m": model}, log_path=log) as mirror, \
            HubServer(dirs={"m": model}, instrument=True) as run_server:
        for i in range(25):
            fetch(f"{mirror.url}/nothing-{i}")
            fetch(f"{run_server.url}/nothing-{i}")
        kept = [r["path"] for r in mirror.requests()]
        assert 10 <= len(kept) <= 11 and kept[-1] == "/nothing-24"
        assert len(run_server.requests()) == 25  # a run's server keeps its whole log
    assert len(log.read_text().splitlines()) == 25  # --log has every one


def test_ipv6_loopback(model):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        srv = HubServer(dirs={"m": model}, host="::1", instrument=True).start()
    except UserError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with srv:
        assert srv.url == f"http://[::1]:{srv.port}"
        assert fetch(srv.url + "/m/saved_model.pb")[2] == FILES["saved_model.pb"]
        assert fetch(srv.url + "/_harness/health")[0] == 200  # Host: [::1]:PORT is loopback


# ---- under load: a pool, a cap, timeouts ------------------------------------------------

def server_threads(srv):
    return [t for t in threading.enumerate() if t.name.startswith(f"hubserver-{srv.port}")]


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def read_all(sock, timeout=10.0):
    """Everything the server sends until it closes (b"" if it resets)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


@contextlib.contextmanager
def connections(srv, n, send=b""):
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
            if send:
                socks[-1].sendall(send)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def timed_fetch(url, **kwargs):
    started = time.monotonic()
    answer = fetch(url, **kwargs)
    return answer, time.monotonic() - started


def test_a_fixed_pool_of_threads(model):
    with HubServer(dirs={"m": model}, workers=4) as srv:
        assert len(server_threads(srv)) == 5  # the selector thread and 4 workers
        results = []
        clients = [threading.Thread(target=lambda: results.append(
            fetch(with_format(srv.url + "/m"))[0])) for _ in range(40)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
        assert results == [200] * 40
        assert len(server_threads(srv)) == 5
    assert server_threads(srv) == []  # joined on stop


def test_over_the_cap_is_503_at_once_and_health_still_answers(model):
    with HubServer(dirs={"m": model}, max_connections=2, instrument=True) as srv, \
            connections(srv, 2, b"GET /m/saved_model.pb HTTP/1.1\r\nHost: x\r\n") as held:
        wait_for(lambda: srv.stats()["regular"] == 2)
        (status, headers, body), took = timed_fetch(srv.url + "/m/saved_model.pb")
        assert (status, headers["Retry-After"], headers["Connection"]) == (503, "1", "close")
        assert body.startswith(b"busy: 2 connections open") and took < 1
        for _ in range(3):  # a health check is answered over the cap too
            (status, _, body), took = timed_fetch(srv.url + "/_harness/health")
            assert (status, body) == (200, b"ok\n") and took < 1
        (status, _, _), took = timed_fetch(srv.url + "/_harness/requests")
        assert status == 503 and took < 1  # (only the health check is)
        with connections(srv, 1) as (silent,):  # never says what it wants: 503 after 1 s
            started = time.monotonic()
            assert read_all(silent).startswith(b"HTTP/1.1 503 ")
            assert 0.5 < time.monotonic() - started < 3
        for sock in held:  # those under the cap are served
            sock.sendall(b"Connection: close\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        assert srv.stats()["refused"] == 3
    assert [r["status"] for r in srv.requests()] == [200, 200]


def test_a_head_that_does_not_arrive_is_408(model):
    with HubServer(dirs={"m": model}, header_timeout=0.5, workers=1) as srv, \
            connections(srv, 1, b"GET /m/saved_model.pb HTTP/1.1\r\nHost: x\r\n") as (slow,), \
            connections(srv, 1) as (silent,):
        started = time.monotonic()
        for sock in (slow, silent):
            answer = read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
            assert answer.endswith(b"the request did not arrive within 0.5 s\n")
        assert 0.4 < time.monotonic() - started < 3
        assert srv.stats()["header_timeouts"] == 2 and srv.requests() == []
        # an idle keep-alive connection is closed after as long, silently
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request("GET", "/m/saved_model.pb")
            assert conn.getresponse().read() == FILES["saved_model.pb"]
            started = time.monotonic()
            assert read_all(conn.sock) == b""
            assert 0.4 < time.monotonic() - started < 3
        finally:
            conn.close()
        assert srv.stats()["header_timeouts"] == 2


def test_a_client_that_does_not_read_is_dropped(tmp_path):
    big = make_model(tmp_path / "big", {"saved_model.pb": b"x"})
    with open(big / "big.bin", "wb") as fh:
        fh.truncate(64 << 20)  # more than the socket buffers hold
    with HubServer(dirs={"big": big}, workers=1, send_timeout=0.5) as srv:
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            reader.connect(("127.0.0.1", srv.port))
            reader.sendall(b"GET /big/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
            wait_for(lambda: srv.stats()["busy"] == 1)
            (status, _, body), took = timed_fetch(srv.url + "/big/saved_model.pb")
            assert (status, body) == (200, b"x") and took < 5  # the only worker came back
            assert srv.stats()["send_timeouts"] == 1
        finally:
            reader.close()
        dropped = srv.requests()[0]
        assert dropped["path"] == "/big/big.bin" and 0 < dropped["bytes"] < 64 << 20


def test_health_is_answered_while_every_worker_is_busy(model):
    with HubServer(dirs={"m": model}, workers=1, faults=True, instrument=True) as srv:
        slow = threading.Thread(target=fetch, args=(
            with_format(srv.url + "/m?fault=slow&fault-delay=2"),))
        slow.start()
        try:
            wait_for(lambda: srv.stats()["busy"] == 1)
            (status, _, _), took = timed_fetch(srv.url + "/_harness/health")
            assert status == 200 and took < 0.5
            assert srv.stats()["busy"] == 1
        finally:
            slow.join(30)


def test_pipelined_requests_are_answered_in_order(server):
    with connections(server, 1, b"GET /m/saved_model.pb HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"GET /m/assets/vocab.txt HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n") as (sock,):
        answer = read_all(sock)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    first = answer.index(FILES["saved_model.pb"])
    assert first < answer.index(FILES["assets/vocab.txt"])
    assert [r["path"] for r in server.requests()] == ["/m/saved_model.pb", "/m/assets/vocab.txt"]


def test_oversized_head_is_431(server):
    with connections(server, 1, b"GET /m HTTP/1.1\r\nX-Big: " + b"a" * 70000) as (sock,):
        assert read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_stop_closes_open_connections_at_once(model):
    srv = HubServer(dirs={"m": model}, faults=True).start()
    cut = []

    def slow_download():
        try:
            fetch(with_format(srv.url + "/m?fault=slow&fault-delay=10"))
        except (OSError, http.client.HTTPException) as exc:
            cut.append(exc)

    with connections(srv, 2, b"GET /m HTTP/1.1\r\n") as partial, connections(srv, 1) as idle:
        slow = threading.Thread(target=slow_download)
        slow.start()
        wait_for(lambda: srv.stats()["busy"] == 1 and srv.stats()["regular"] == 4)
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 3
        for sock in partial + idle:
            assert read_all(sock, 5) == b""
        slow.join(30)
    assert len(cut) == 1  # the answer under way was cut short
    assert server_threads(srv) == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()


@pytest.mark.parametrize("setting", [dict(workers=0), dict(workers=2.5), dict(max_connections=-1),
                                     dict(header_timeout=0), dict(send_timeout=float("nan"))])
def test_bad_limits_are_user_errors(model, setting):
    with pytest.raises(UserError, match="expected a positive"):
        HubServer(dirs={"m": model}, **setting)


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


@contextlib.contextmanager
def serve_process(args, cwd, env=None):
    """``harness serve ARGS`` as a real process, stopped (and its pipes closed) on the way out
    whatever happened: no test leaves one behind."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", *args], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
    try:
        yield proc
    finally:
        stop(proc)


def test_cli_serves_until_ctrl_c(tmp_path, model):
    """`harness serve` prints its URL and models, serves, and Ctrl-C is a clean exit 0."""
    log = tmp_path / "log.jsonl"
    with serve_process(["--dir", f"m={model}", "--log", str(log), "--cache",
                        str(tmp_path / "c")], cwd=tmp_path) as proc:
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
    assert "Traceback" not in err and err.endswith("stopped (Ctrl-C)\n")
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
