"""Users' models: format detection, names, and one-line errors for what cannot be read;
a URL's archive is hostile input, checked against real archives and real misbehaving
servers on loopback (threads in this process)."""
import io
import os
import re
import socket
import struct
import tarfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from harness import config, usermodels
from harness.errors import UserError
from harness.pipeline import Options
from harness.pipeline import load as pipeline_load
from harness.usermodels import FetchLimits, format_of, name_for, user_model

MiB = 1 << 20


def member(name, data=b"", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data)
    if kind == tarfile.DIRTYPE:
        info.mode = 0o755
    return info, data


MODEL = [member("saved_model.pb", b"\x08\x01"), member("variables", kind=tarfile.DIRTYPE),
         member("variables/variables.index", b"index")]


def targz(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def bomb(size=2 << 30):
    """A model whose variables are ``size`` zero bytes (a multiple of 1 MiB), as a tar.gz
    made on the fly: one compressed MiB of zeros, repeated (each ends with a full flush),
    so the server sends gigabytes for the CPU of one; nothing is written anywhere."""
    pb = tarfile.TarInfo("saved_model.pb")
    pb.size = 2
    data = tarfile.TarInfo("variables/variables.data-00000-of-00001")
    data.size = size
    head = pb.tobuf(tarfile.PAX_FORMAT) + b"\x08\x01" + bytes(510) + data.tobuf(
        tarfile.PAX_FORMAT)
    tail = bytes(1024)
    zeros = bytes(MiB)
    fresh = zlib.compressobj(9, zlib.DEFLATED, -15)
    zchunk = fresh.compress(zeros) + fresh.flush(zlib.Z_FULL_FLUSH)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + z.compress(head) + z.flush(
        zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(head)
    for _ in range(size // MiB):
        crc = zlib.crc32(zeros, crc)
        yield zchunk
    crc = zlib.crc32(tail, crc)
    yield z.compress(tail) + z.flush() + struct.pack("<II", crc, (len(head) + size + 1024)
                                                     & 0xFFFFFFFF)


class Server:
    """A loopback HTTP server; ``respond(handler, server)`` answers every GET. ``sent``
    counts the body bytes it wrote, ``requests`` the paths it was asked for."""

    def __init__(self, respond):
        self.sent, self.requests, self.stop = 0, [], threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                outer.requests.append(self.path)
                try:
                    respond(self, outer)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def write(self, handler, data):
        handler.wfile.write(data)
        handler.wfile.flush()
        self.sent += len(data)

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def archive(body, length=True):
    def respond(h, server):
        h.send_response(200)
        h.send_header("Content-Type", "application/x-tar")
        if length:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        server.write(h, body)
    return respond


def stream(chunks):
    """A close-delimited body (no Content-Length) from ``chunks()``."""
    def respond(h, server):
        h.send_response(200)
        h.end_headers()
        for chunk in chunks():
            if server.stop.is_set():
                return
            server.write(h, chunk)
    return respond


def trickle(every, in_headers=False):
    """One byte every ``every`` seconds: of the body, or of the status line and headers."""
    body = targz(*MODEL)

    def respond(h, server):
        if in_headers:
            data = b"HTTP/1.0 200 OK\r\nContent-Type: application/x-tar\r\n\r\n" + body
        else:
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            data = body
        for i in range(len(data)):
            if server.stop.wait(every if i else 0):
                return
            server.write(h, data[i:i + 1])
    return respond


def redirect(code, location):
    def respond(h, server):
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return respond


class Silent:
    """Accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for c in self.conns:
            c.close()
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(): close alone would not
        self.sock.close()


def _model(tmp_path, *files):
    d = tmp_path / "my_model"
    d.mkdir()
    for name in files:
        (d / name).write_bytes(b"")
    return d


@pytest.mark.parametrize("files, fmt", [
    ({"saved_model.pb", "tfhub_module.pb", "variables"}, "tf1_hub"),
    ({"saved_model.pb", "keras_metadata.pb", "variables"}, "keras_saved_model"),
    ({"saved_model.pb", "variables", "fingerprint.pb"}, "saved_model"),
    ({"model.keras"}, None),
])
def test_format_of(files, fmt):
    assert format_of(files) == fmt


def test_name_for():
    assert name_for("https://hub.example/google/nnlm-en-dim128/2") == "nnlm-en-dim128-v2"
    assert name_for("/models/my encoder/") == "my-encoder"


def test_user_model_spec(tmp_path):
    d = _model(tmp_path, "saved_model.pb", "tfhub_module.pb")
    spec = user_model(str(d))
    assert spec == {"name": "my_model", "kind": "user", "handle": str(d), "format": "tf1_hub",
                    "inputs": None, "signature": None}


@pytest.mark.parametrize("make, fmt, inputs, message", [
    (lambda t: t / "nope", "auto", None, "does not exist"),
    (lambda t: _model(t, "notes.txt"), "auto", None,
     "is not a SavedModel or TF1 Hub module (no saved_model.pb; found notes.txt)"),
    (lambda t: _model(t, "saved_model.pb"), "tf1_hub", None,
     "looks like saved_model, not tf1_hub"),
    (lambda t: _model(t, "saved_model.pb"), "auto", "x.txt", "is not an .npz file"),
    (lambda t: _model(t, "saved_model.pb"), "onnx", None, "unknown format 'onnx'"),
])
def test_unreadable_models_are_one_line_errors(tmp_path, make, fmt, inputs, message):
    with pytest.raises(UserError) as info:
        user_model(str(make(tmp_path)), fmt, inputs)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("--model")


def test_models_entry_in_matrix(tmp_path, default_matrix_path):
    d = _model(tmp_path, "saved_model.pb", "keras_metadata.pb")
    with open(default_matrix_path) as fh:
        raw = yaml.safe_load(fh)
    raw["models"] = [{"name": "mine", "handle": str(d)}]
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    (m,) = config.load(str(path)).models
    assert (m.name, m.spec["kind"], m.spec["format"]) == ("mine", "user", "keras_saved_model")
    raw["models"] = [{"name": "mine", "handle": str(tmp_path / "missing")}]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"matrix.yaml: models\[0\]: .*missing does not exist"):
        config.load(str(path))


# --- a URL's archive is hostile input ------------------------------------------------------

SYM, HARD = tarfile.SYMTYPE, tarfile.LNKTYPE
HOSTILE = {
    "traversal": ([member("../evil", b"x")],
                  "archive member '../evil' would land outside the model directory"),
    "traversal-deep": ([member("variables/../../evil", b"x")],
                       "archive member 'variables/../../evil' would land outside"),
    "absolute": ([member("/tmp/evil-abs", b"x")],
                 "archive member '/tmp/evil-abs' has an absolute path"),
    "symlink-absolute": ([member("link", kind=SYM, linkname="/etc/passwd")],
                         "archive member 'link' is a symlink to the absolute path "
                         "'/etc/passwd'"),
    "symlink-out": ([member("variables/link", kind=SYM, linkname="../../etc/passwd")],
                    "archive member 'variables/link' is a symlink to '../../etc/passwd', "
                    "outside the model directory"),
    "hardlink-out": ([member("hard", kind=HARD, linkname="../outside")],
                     "archive member 'hard' is a hard link to '../outside', outside the model "
                     "directory"),
    "hardlink-absolute": ([member("hard", kind=HARD, linkname="/etc/shadow")],
                          "archive member 'hard' is a hard link to the absolute path "
                          "'/etc/shadow'"),
    # each link stays inside on its own; followed as extraction would, the last escapes
    "symlink-chain": ([member("x/y", kind=SYM, linkname=".."),
                       member("x/y/z", kind=SYM, linkname=".."),
                       member("x/y/z/evil", b"x")],
                      "archive member 'x/y/z' is a symlink to '..', outside the model "
                      "directory through a symlink member"),
    "through-symlink": ([member("up", kind=SYM, linkname="."),
                         member("up/../../evil", b"x")],
                        "archive member 'up/../../evil' would land outside"),
    "symlink-loop": ([member("a", kind=SYM, linkname="b"), member("b", kind=SYM, linkname="a"),
                      member("a/x", b"x")],
                     "archive member 'a/x' is reached through a loop of symlink members"),
    "char-device": ([member("dev", kind=tarfile.CHRTYPE)],
                    "archive member 'dev' is a character device"),
    "block-device": ([member("sda", kind=tarfile.BLKTYPE)],
                     "archive member 'sda' is a block device"),
    "fifo": ([member("fifo", kind=tarfile.FIFOTYPE)], "archive member 'fifo' is a FIFO"),
    "newline-in-name": ([member("../a\nb", b"x")], "archive member '../a\\nb' would land"),
}


@pytest.fixture(params=["data_filter", "fallback"])
def member_filter(request, monkeypatch):
    """Both ways of checking members: tarfile's data filter, and the fallback for a Python
    without it."""
    if request.param == "fallback":
        monkeypatch.setattr(usermodels, "_DATA_FILTER", None)
    elif usermodels._DATA_FILTER is None:
        pytest.skip("this Python has no tarfile.data_filter")
    return request.param


def _fetch(url, **limits):
    """user_model(url) -> (spec or UserError, seconds)."""
    start = time.monotonic()
    try:
        got = user_model(url, fetch=FetchLimits(**limits) if limits else None)
    except UserError as exc:
        got = exc
    return got, time.monotonic() - start


def _one_line_error(got, where="--model"):
    assert isinstance(got, UserError), got
    text = str(got)
    assert "\n" not in text and text.startswith(where), text
    return text


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_is_refused(case, member_filter):
    members, message = HOSTILE[case]
    # after a whole model: the whole archive stream is read, not only its first members
    with Server(archive(targz(*MODEL, *members))) as server:
        got, seconds = _fetch(server.url + "/m/1")
    text = _one_line_error(got)
    assert message in text and text.endswith("; refusing it"), text
    assert seconds < 5


@pytest.mark.parametrize("extra", [
    [],
    [member("variables/alias", kind=SYM, linkname="variables.index")],  # inside: allowed
    [member("assets", kind=tarfile.DIRTYPE), member("assets/vocab.txt", b"a\nb\n"),
     member("assets/copy", kind=HARD, linkname="assets/vocab.txt")],
    [member("./variables/../keras_metadata.pb", b"{}")],  # '..' that stays inside
])
def test_healthy_archive_is_accepted(extra, member_filter):
    with Server(archive(targz(*MODEL, *extra))) as server:
        got, seconds = _fetch(server.url + "/m/1?token=1")
    assert isinstance(got, dict), got
    fmt = "keras_saved_model" if any("keras" in i.name for i, _ in extra) else "saved_model"
    assert (got["format"], got["name"]) == (fmt, "m-v1")
    assert server.requests == ["/m/1?token=1&tf-hub-format=compressed"]


def test_an_explicit_format_does_not_skip_the_check():
    with Server(archive(targz(*MODEL, member("../evil", b"x")))) as server:
        with pytest.raises(UserError, match="archive member '../evil' would land outside"):
            user_model(server.url + "/m", "saved_model")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirects_are_followed(code):
    with Server(archive(targz(*MODEL))) as target, \
            Server(redirect(code, target.url + "/real")) as server:
        got, _ = _fetch(server.url + "/m")
    assert isinstance(got, dict) and got["format"] == "saved_model", got
    assert target.requests == ["/real"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/m.tar.gz"])
def test_redirect_off_http_is_refused(location):
    with Server(redirect(302, location)) as server:
        got, _ = _fetch(server.url + "/m")
    text = _one_line_error(got)
    assert "refusing it" in text or "not allowed" in text, text


@pytest.fixture
def tmpdir_watched(tmp_path, monkeypatch):
    """Temporary files go to a directory of the test's, to see that nothing lands there."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(usermodels.tempfile, "tempdir", str(d))
    return d


def _bytes_under(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def test_gzip_bomb_is_refused_within_seconds(tmpdir_watched):
    """2 GiB of zeros in 2 MiB, under the default caps: the ratio cap stops it after 256 MiB
    unpacked (a fraction of a MiB received); nothing is written."""
    with Server(stream(bomb)) as server:
        got, seconds = _fetch(server.url + "/bomb")
        sent = server.sent
    text = _one_line_error(got)
    assert re.search(r"the archive inflates more than 100x \(256 MiB from [01]\.\d MiB", text)
    assert "a compression bomb?" in text
    assert "raise max_ratio (settings.fetch.max_ratio, or on its models: entry)" in text
    assert seconds < 10
    assert sent < 2.1 * MiB  # what the server wrote (loopback buffers take a lot of it)
    assert _bytes_under(tmpdir_watched) == 0


def test_gzip_bomb_over_the_extract_cap_is_refused_at_its_header(tmpdir_watched):
    with Server(stream(bomb)) as server:
        got, seconds = _fetch(server.url + "/bomb", max_extract_mb=1024)
    text = _one_line_error(got)
    assert ("the archive unpacks to more than 1024 MiB (max_extract_mb; member "
            "'variables/variables.data-00000-of-00001' alone is 2048 MiB)") in text
    assert seconds < 3
    assert _bytes_under(tmpdir_watched) == 0


def test_unpacked_bytes_are_counted_as_they_come():
    """A 900 KiB member name (a pax header under the header cap) is read before any
    member: the unpacked count stops it, not the member sizes."""
    with Server(archive(targz(member("x" * (900 << 10), b"")))) as server:
        got, _ = _fetch(server.url + "/m", max_extract_mb=0.5)
    assert "the archive unpacks to more than 0.5 MiB (max_extract_mb)" in _one_line_error(got)


def _big_model():
    data = os.urandom(8 * MiB)  # does not compress
    return targz(*MODEL, member("variables/variables.data-00000-of-00001", data))


def test_oversized_download_announced():
    with Server(archive(_big_model())) as server:
        got, seconds = _fetch(server.url + "/m", max_download_mb=1)
        sent = server.sent
    text = _one_line_error(got)
    assert "the server announces 8 MiB, more than max_download_mb (1 MiB); refusing it" in text
    assert seconds < 3 and sent <= len(_big_model())


def test_oversized_download_unannounced():
    body = _big_model()
    chunks = lambda: (body[i:i + 65536] for i in range(0, len(body), 65536))  # noqa: E731
    with Server(stream(chunks)) as server:
        got, seconds = _fetch(server.url + "/m", max_download_mb=1)
    text = _one_line_error(got)
    assert "the server sent more than 1 MiB (max_download_mb); refusing it" in text
    assert seconds < 3


@pytest.mark.parametrize("make", [
    lambda: Server(trickle(0.5)),  # every recv() returns: only a deadline stops it
    lambda: Server(trickle(0.5, in_headers=True)),  # the status line, byte by byte
    lambda: Silent(),  # accepts, never answers
], ids=["trickle-body", "trickle-headers", "silent"])
def test_deadline_holds(make):
    with make() as server:
        got, seconds = _fetch(server.url + "/m", deadline_s=3)
    text = _one_line_error(got)
    assert "the download did not finish within its deadline (3 s;" in text, text
    assert "raise deadline_s (settings.fetch.deadline_s, or on its models: entry)" in text
    assert 2.9 < seconds < 3 + 1.5


def test_deadline_covers_redirects():
    with Server(trickle(0.5)) as slow, Server(redirect(302, slow.url + "/m")) as server:
        got, seconds = _fetch(server.url + "/m", deadline_s=2)
    assert "did not finish within its deadline (2 s;" in _one_line_error(got)
    assert seconds < 2 + 1.5


@pytest.mark.parametrize("body, message", [
    (b"<html>not a model</html>", "did not answer a tar.gz model archive (not gzip data"),
    (targz(*MODEL)[:60], "did not answer a tar.gz model archive (the archive ends early"),
])
def test_not_an_archive(body, message):
    with Server(archive(body)) as server:
        got, _ = _fetch(server.url + "/m")
    assert message in _one_line_error(got)


def test_http_error_and_refused_connection():
    def not_found(h, server):
        h.send_error(404)
    with Server(not_found) as server:
        got, _ = _fetch(server.url + "/m")
    assert "answered HTTP 404 Not Found; check the URL" in _one_line_error(got)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d/m" % sock.getsockname()[1]
        got, seconds = _fetch(url)
    assert "cannot download" in _one_line_error(got) and seconds < 3


def _matrix(tmp_path, default_matrix_path, **changes):
    with open(default_matrix_path) as fh:
        raw = yaml.safe_load(fh)
    raw["settings"].update(reports_dir=str(tmp_path / "reports"),
                           envs_dir=str(tmp_path / "envs"))
    for model in raw["models"]:
        model["definition"] = os.path.join(os.path.dirname(default_matrix_path),
                                           model["definition"])
    raw.update(changes)
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def test_limits_from_settings_and_models_entry(tmp_path, default_matrix_path):
    with Silent() as server:
        path, raw = _matrix(tmp_path, default_matrix_path,
                            models=[{"name": "mine", "handle": server.url + "/m",
                                     "deadline_s": 1}])
        raw["settings"]["fetch"] = {"deadline_s": 30, "max_download_mb": 10}
        path.write_text(yaml.safe_dump(raw))
        start = time.monotonic()
        with pytest.raises(UserError) as info:  # the model's own deadline wins
            config.load(str(path))
        assert time.monotonic() - start < 1 + 1.5
    text = _one_line_error(info.value, str(path))
    assert "models[0]: the download did not finish within its deadline (1 s;" in text


def test_model_flag_takes_the_matrix_settings(tmp_path, default_matrix_path):
    with Silent() as server:
        path, raw = _matrix(tmp_path, default_matrix_path)
        raw["settings"]["fetch"] = {"deadline_s": 1.5}
        path.write_text(yaml.safe_dump(raw))
        start = time.monotonic()
        with pytest.raises(UserError, match=r"^--model http://.*: the download did not finish "
                                            r"within its deadline \(1.5 s;"):
            pipeline_load(Options(matrix=str(path), models=(server.url + "/m",)))
        assert time.monotonic() - start < 1.5 + 1.5


@pytest.mark.parametrize("fetch, message", [
    ({"deadline_s": 0}, "settings.fetch.deadline_s: must be > 0"),
    ({"deadline_s": float("inf")}, "settings.fetch.deadline_s: must be > 0 and finite"),
    ({"max_download_mb": "big"}, "settings.fetch.max_download_mb: expected float"),
    ({"deadline": 3}, "settings.fetch.deadline: unknown key; did you mean 'deadline_s'?"),
])
def test_bad_fetch_settings(tmp_path, default_matrix_path, fetch, message):
    path, raw = _matrix(tmp_path, default_matrix_path)
    raw["settings"]["fetch"] = fetch
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load(str(path))


def test_bad_fetch_key_on_a_model(tmp_path, default_matrix_path):
    path, _ = _matrix(tmp_path, default_matrix_path,
                      models=[{"name": "mine", "handle": "http://127.0.0.1:9/m",
                               "max_extract_mb": -1}])
    with pytest.raises(UserError, match=r"models\[0\].max_extract_mb: must be > 0"):
        config.load(str(path))


def test_a_huge_tar_header_is_refused_unread():
    """A PAX header member tarfile would read whole into memory (64 MiB of one attribute
    in 65 KB of gzip) is refused at its size, before its bytes are read."""
    info = tarfile.TarInfo("saved_model.pb")
    info.size = 2
    info.pax_headers = {"comment": "x" * (64 * MiB)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"\x08\x01"))
    assert len(buf.getvalue()) < MiB
    with Server(archive(buf.getvalue())) as server:
        got, seconds = _fetch(server.url + "/m")
    assert "a tar header member of 64 MiB" in _one_line_error(got) and seconds < 10


@pytest.mark.parametrize("url", ["http://a..b/x", "http://[::1/x", "http://127.0.0.1:99999/x"])
def test_a_malformed_url_is_one_line(url):
    got, _ = _fetch(url)
    assert "is not a valid URL" in _one_line_error(got)
