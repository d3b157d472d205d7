"""A local TF Hub server: the hosting protocol over HTTP, for real ``tensorflow_hub`` clients.

``HubServer`` serves model directories the way tfhub.dev (and Kaggle Models) do, so that
``hub.load(url)``, ``hub.resolve(url)``, ``hub.KerasLayer(url)`` and ``hub.Module(url)``
download them for real (``harness serve`` is the same server on the command line).

URL layout
    The model store (``<store>/<env>/<mode>/<format>/<model>/{model/, manifest.json,
    golden.npz}``) is served at ``/``: ``/<env>/<mode>/<format>/<model>`` names a store
    entry, and a directory holding ``manifest.json`` and ``model/`` is served *as* its
    ``model/`` subdirectory (the model root).  A directory holding ``saved_model.pb`` or
    ``tfhub_module.pb`` is itself a model root.  ``dirs={"NAME": PATH}`` serves PATH under
    ``/NAME/...`` with the same rules.

The protocol (what the ``tensorflow_hub`` resolvers send)
    - ``GET <model>?tf-hub-format=compressed`` (other query parameters are kept and
      ignored) and ``GET <model>.tar.gz`` / ``.tgz``: 200, the model root as a tar.gz whose
      members are relative to the root (directories, then files, each sorted; only regular
      files and directories), built once per content and streamed from
      ``<cache_dir>/archives/``.
    - ``GET <model>?tf-hub-format=uncompressed`` (``TFHUB_MODEL_LOAD_FORMAT=UNCOMPRESSED``,
      hub >= 0.10): ``303 See Other`` with ``Location: file://<model root>`` and the model
      root's absolute path as the text body.  tfhub.dev answers a ``gs://`` location here,
      which the library then reads in place; there is no GCS on this machine, so the library
      refuses this answer with its own ``ValueError: Expected server to return a GCS
      location but received /...`` — the documented behaviour, and what the harness records.
    - ``GET <model>``: an HTML index of the model's files; ``GET <model>/<file>``: the
      file.  ``HEAD`` answers like ``GET`` without a body.
    - ``/_redirect/<code>/<rest>`` (301, 302, 303, 307, 308): that status with ``Location:
      /<rest>?<the same query>``.
    - ``/_harness/requests?contains=S`` (the request log as JSON), ``/_harness/models`` (every
      model root), ``/_harness/health``; these are not logged.

Faults (``faults=True`` only): ``?fault=<kind>`` on an archive request, applied to the first
``fault-times`` (default 1) requests carrying the same ``fault-token`` (every request when it
has none): ``404``, ``not-tar`` (an HTML page), ``truncated`` (the full Content-Length, half
the body, then the connection is closed), ``nested`` (members under ``<root name>/``),
``symlink`` (the archive plus a member ``link-to-passwd -> /etc/passwd``), ``slow`` (answers
after ``fault-delay`` seconds, default 2, at most 10).

Security: loopback by default; the decoded path may not hold ``..``, ``//``, NUL or a
backslash (404); no path component under a root may be a symlink, and the real path must stay
inside the root (403); a model root with a symlink anywhere inside is refused (403), never
archived or followed.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import html
import ipaddress
import mimetypes
import os
import shutil
import socketserver
import stat
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Union, cast

from .errors import UserError
from .jsonio import dumps

PathLike = Union[str, Path]

CHUNK = 1 << 20
FAULTS = ("404", "not-tar", "truncated", "nested", "symlink", "slow")
REDIRECTS = (301, 302, 303, 307, 308)
MODEL_FILES = ("saved_model.pb", "tfhub_module.pb")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
ARCHIVE_TYPE = "application/gzip"
MAX_DELAY_S = 10.0
MAX_LISTED = 30
FINISH_WAIT_S = 5.0
NOT_TAR = (b"<html><head><title>Not a model</title></head><body><p>This is not a model: "
           b"an HTML page served where the archive was expected (fault=not-tar).</p>"
           b"</body></html>\n")
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class HttpError(Exception):
    """An HTTP error answer: ``status`` and a one-line text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Target:
    """What a request path names: a model root, a file in one, or a directory of models."""

    kind: str  # "model" | "file" | "dir" | "top"
    path: str  # the file or directory on disk ("" for "top": every root)
    url: str  # URL path of the model root (kind model/file) or of the directory
    model: str = ""  # the model root on disk (kind model/file)


@dataclass(frozen=True)
class Entry:
    """One directory or regular file under a model root."""

    rel: str
    is_dir: bool
    size: int
    mtime_ns: int
    mode: int


@dataclass(frozen=True)
class Fault:
    """A fault asked for by a request's query."""

    kind: str
    token: str | None
    times: int
    delay: float


# ---- paths -----------------------------------------------------------------------------

def safe_parts(raw_path: str) -> list[str]:
    """The decoded components of a request path; 404 for anything that could escape a root."""
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        raise HttpError(404, "not found: absolute and '//' paths are refused")
    decoded = urllib.parse.unquote(raw_path)
    if "\x00" in decoded or "\\" in decoded:
        raise HttpError(404, "not found: NUL and backslash are refused in paths")
    body = decoded[1:-1] if decoded.endswith("/") else decoded[1:]
    if not body:
        return []
    parts = body.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise HttpError(404, "not found: '.', '..' and empty path components are refused")
    return parts


def _quote(parts: list[str]) -> str:
    return "".join("/" + urllib.parse.quote(p, safe="") for p in parts)


def _step(parent: str, name: str) -> tuple[str, os.stat_result]:
    """``parent/name`` and its lstat; 404 if missing, 403 if it is a symlink."""
    path = os.path.join(parent, name)
    try:
        st = os.lstat(path)
    except OSError:
        raise HttpError(404, f"not found: {name}")
    if stat.S_ISLNK(st.st_mode):
        raise HttpError(403, f"forbidden: {name} is a symlink (symlinks are never followed)")
    return path, st


def _inside(root: str, path: str) -> None:
    """403 unless the real path of ``path`` is ``root`` (a real path) or under it."""
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise HttpError(403, "forbidden: outside the served directories")


def model_root_of(directory: str) -> str | None:
    """The model root a directory stands for: its ``model/`` (a store entry), itself, or None."""
    if all(os.path.lexists(os.path.join(directory, n)) for n in ("manifest.json", "model")):
        return os.path.join(directory, "model")
    if any(os.path.lexists(os.path.join(directory, n)) for n in MODEL_FILES):
        return directory
    return None


def resolve(root: str, root_url: str, parts: list[str]) -> Target:
    """What ``parts`` (decoded URL components) name under ``root`` (a real path)."""
    cur, i = root, 0
    model = model_root_of(cur)
    while model is None:
        if i == len(parts):
            return Target("dir", cur, root_url + _quote(parts))
        cur, st = _step(cur, parts[i])
        if not stat.S_ISDIR(st.st_mode):
            raise HttpError(404, f"not found: {parts[i]} is not a model directory")
        i += 1
        model = model_root_of(cur)
    url = root_url + _quote(parts[:i]) or "/"
    if model != cur:
        model, st = _step(cur, "model")
        if not stat.S_ISDIR(st.st_mode):
            raise HttpError(404, f"not found: {url}/model is not a directory")
    path = model
    for name in parts[i:]:
        path, st = _step(path, name)
    _inside(root, path)
    if i == len(parts):
        return Target("model", path, url, os.path.realpath(model))
    if not stat.S_ISREG(st.st_mode):
        raise HttpError(404, f"not found: {'/'.join(parts[i:])} is not a file of {url}")
    return Target("file", path, url, os.path.realpath(model))


def discover(directory: str, url: str, skip: frozenset[str] = frozenset()) -> Iterator[
        tuple[str, str]]:
    """(URL path, model root) of every model root under ``directory`` (symlinks skipped)."""
    model = model_root_of(directory)
    if model is not None:
        yield url or "/", model
        return
    try:
        children = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for child in children:
        if child.name not in skip and child.is_dir(follow_symlinks=False):
            yield from discover(child.path, url + _quote([child.name]))


# ---- archives --------------------------------------------------------------------------

def scan_model(root: str, url: str = "") -> list[Entry]:
    """Every entry under a model root, directories then files (each sorted by path).

    403 naming the entry when the root holds a symlink or anything but regular files
    and directories: such a model is never archived, listed or followed.
    """
    dirs: list[Entry] = []
    files: list[Entry] = []

    def refuse(err: OSError) -> None:
        raise HttpError(403, f"forbidden: cannot read {url or root}: {err.strerror}")

    for top, dirnames, filenames in os.walk(root, onerror=refuse):
        for name in dirnames + filenames:
            path = os.path.join(top, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode)
                                                or stat.S_ISREG(st.st_mode)):
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "a special file"
                raise HttpError(403, f"forbidden: model {url or root} contains {what}: {rel} "
                                     "(only regular files and directories are served)")
            entry = Entry(rel, stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime_ns,
                          stat.S_IMODE(st.st_mode))
            (dirs if entry.is_dir else files).append(entry)
    return sorted(dirs, key=lambda e: e.rel) + sorted(files, key=lambda e: e.rel)


def fingerprint(entries: list[Entry]) -> str:
    """sha1 of (relative path, size, mtime_ns) of every entry."""
    digest = hashlib.sha1()
    for e in entries:
        digest.update(f"{e.rel}\0{e.size}\0{e.mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def write_archive(dest: str, root: str, entries: list[Entry], variant: str = "") -> None:
    """Write the tar.gz of ``entries`` (gzip level 1); ``variant``: "", "nested", "symlink"."""
    prefix = os.path.basename(root.rstrip(os.sep)) + "/" if variant == "nested" else ""
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", compresslevel=1,
                                                 fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if prefix:
            tar.addfile(_tarinfo(prefix.rstrip("/"), tarfile.DIRTYPE, 0o755, 0))
        for e in entries:
            info = _tarinfo(prefix + e.rel, tarfile.DIRTYPE if e.is_dir else tarfile.REGTYPE,
                            e.mode, e.mtime_ns // 1_000_000_000)
            if e.is_dir:
                tar.addfile(info)
                continue
            info.size = e.size
            with open_nofollow(os.path.join(root, e.rel)) as fh:
                tar.addfile(info, fh)
        if variant == "symlink":
            link = _tarinfo("link-to-passwd", tarfile.SYMTYPE, 0o777, 0)
            link.linkname = "/etc/passwd"
            tar.addfile(link)


def open_nofollow(path: str) -> BinaryIO:
    """Open a file for reading, refusing a symlink as its last component."""
    return os.fdopen(os.open(path, os.O_RDONLY | O_NOFOLLOW), "rb")


def _tarinfo(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class ArchiveCache:
    """Archives built once per model-root content, under ``<cache_dir>/archives``.

    Names are ``<sha1 of root realpath>-<fingerprint>[-<variant>].tar.gz``; a build goes to
    a temporary file then ``os.replace``; one lock per name, so concurrent requests for the
    same archive wait for a single build.  Older archives of the same root are removed.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.built: list[str] = []
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def get(self, root: str, entries: list[Entry], variant: str = "") -> BinaryIO:
        """The archive of ``root`` (a real path) with these entries, open for reading."""
        rhash = hashlib.sha1(root.encode("utf-8", "surrogateescape")).hexdigest()
        name = f"{rhash}-{fingerprint(entries)}" + (f"-{variant}" if variant else "")
        path = os.path.join(self.directory, name + ".tar.gz")
        with self._lock(name):
            try:  # opened under the lock: a newer build may unlink it, never mid-open
                return open_nofollow(path)
            except FileNotFoundError:
                pass
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".build-", suffix=".tmp")
            os.close(fd)
            try:
                write_archive(tmp, root, entries, variant)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            fh = open_nofollow(path)
            with self._guard:
                self.built.append(name)
        self._drop_older(rhash, variant, name)
        return fh

    def _drop_older(self, rhash: str, variant: str, keep: str) -> None:
        for other in os.listdir(self.directory):
            bits = other[:-len(".tar.gz")].split("-", 2) if other.endswith(".tar.gz") else []
            if (len(bits) >= 2 and bits[0] == rhash and (bits[2:] or [""])[0] == variant
                    and other != keep + ".tar.gz"):
                try:
                    os.unlink(os.path.join(self.directory, other))
                except OSError:
                    pass


# ---- the server ------------------------------------------------------------------------

class HubServer:
    """The TF Hub hosting protocol over HTTP for a model store and/or named directories.

    ``start()`` serves in a daemon thread (a context manager does start/stop);
    ``serve_forever()`` blocks until Ctrl-C (KeyboardInterrupt propagates) then stops.
    ``url`` is ``http://HOST:PORT`` (no trailing slash); ``requests()`` is the request log.
    """

    def __init__(self, store: PathLike | None = None,
                 dirs: Mapping[str, PathLike] | None = None, host: str = "127.0.0.1",
                 port: int = 0, cache_dir: PathLike | None = None, faults: bool = False,
                 log_path: PathLike | None = None) -> None:
        self.store = _served_dir(store, "--store") if store is not None else None
        self.dirs = {_dir_name(n, p): _served_dir(p, f"--dir {n}=") for n, p in
                     (dirs or {}).items()}
        self.host, self.port = host, int(port)
        self.faults = faults
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.log_path = str(log_path) if log_path is not None else None
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._finishing = 0  # responses whose last byte is being sent, not yet logged
        self._written = 0  # entries written to log_path
        self._log: list[dict[str, Any]] = []
        self._tokens: dict[str, int] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._log_fh: Any = None
        self._own_cache: str | None = None
        self.archives: ArchiveCache | None = None

    # -- life cycle

    def start(self) -> HubServer:
        """Bind and serve in a daemon thread; UserError if the address cannot be used."""
        if self._httpd is not None:
            return self
        self._open_files()
        try:
            httpd = _Server((self.host, self.port), _Handler)
        except (OSError, OverflowError) as exc:
            self._close_files()
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UserError(f"--host {self.host} --port {self.port}: cannot listen there "
                            f"({reason}); pass a free --port (0 picks one) or another --host")
        httpd.hub = self
        self._httpd, self.port = httpd, httpd.server_address[1]
        if not _is_loopback(self.host):
            print(f"warning: serving on {self.host}:{self.port}, not loopback: other machines "
                  "can download every served model", file=sys.stderr)
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={
            "poll_interval": 0.1}, name=f"hubserver-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the log, remove the temporary cache directory."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=10)
        self._close_files()

    def serve_forever(self) -> None:
        """Serve (starting if needed) until Ctrl-C, then stop; KeyboardInterrupt propagates."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _open_files(self) -> None:
        if self.cache_dir is None:
            self._own_cache = tempfile.mkdtemp(prefix="tfhub-compat-hubserver-")
        cache = self.cache_dir or cast(str, self._own_cache)
        try:
            self.archives = ArchiveCache(os.path.join(cache, "archives"))
        except OSError as exc:
            raise UserError(f"--cache {cache}: cannot create archives/ there ({exc.strerror}); "
                            "pass a writable --cache DIR")
        if self.log_path is not None:
            try:
                self._log_fh = open(self.log_path, "a", encoding="utf-8")
            except OSError as exc:
                self._close_files()
                raise UserError(f"--log {self.log_path}: cannot write it ({exc.strerror}); "
                                "pass a writable --log FILE")

    def _close_files(self) -> None:
        with self._lock:
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None
        if self._own_cache is not None:
            shutil.rmtree(self._own_cache, ignore_errors=True)
            self._own_cache = None

    # -- what it serves

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` once started (no trailing slash; kept after stop())."""
        if self._thread is None:
            raise RuntimeError("HubServer.url: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def builds(self) -> list[str]:
        """Names of the archives built so far (to check that each was built once)."""
        return list(self.archives.built) if self.archives is not None else []

    def _roots(self) -> list[tuple[str, str, frozenset[str]]]:
        found: list[tuple[str, str, frozenset[str]]] = [
            (path, _quote([name]), frozenset()) for name, path in self.dirs.items()]
        if self.store is not None:
            hidden = frozenset(self.dirs) | {n for n in os.listdir(self.store) if
                                             n.startswith("_")}
            found.insert(0, (self.store, "", hidden))
        return found

    def models(self) -> list[dict[str, str]]:
        """Every model root served: [{"url": handle URL, "path": model root}]."""
        base = self.url
        return [{"url": base + url, "path": path} for root, prefix, skip in self._roots()
                for url, path in discover(root, prefix, skip)]

    def locate(self, parts: list[str]) -> Target:
        """What the decoded URL components name (HttpError when nothing, or refused)."""
        if parts and parts[0] in self.dirs:
            return resolve(self.dirs[parts[0]], _quote(parts[:1]), parts[1:])
        if self.store is not None:
            return resolve(self.store, "", parts)
        if not parts:
            return Target("top", "", "/")
        raise HttpError(404, f"not found: no served directory named {parts[0]!r}")

    # -- faults and the request log

    def take_fault(self, fault: Fault | None) -> str | None:
        """The fault kind to apply to this request (None once its token is used up)."""
        if fault is None:
            return None
        if fault.token is None:
            return fault.kind
        with self._lock:
            seen = self._tokens[fault.token] = self._tokens.get(fault.token, 0) + 1
        return fault.kind if seen <= fault.times else None

    def finishing(self) -> dict[str, Any]:
        """A response's last bytes are about to be sent: reserve its place in the log
        (filled by ``record``), so that a client which has read a whole response finds it
        in ``requests()`` (which waits for reserved places) in the order it was answered."""
        with self._lock:
            slot: dict[str, Any] = {}
            self._log.append(slot)
            self._finishing += 1
            return slot

    def record(self, entry: dict[str, Any], slot: dict[str, Any] | None = None) -> None:
        """Keep one request's log entry (in its reserved ``slot`` if any) and append the
        entries now complete, in order, to ``log_path``."""
        with self._lock:
            try:
                if slot is None:
                    self._log.append(entry)
                else:
                    slot.update(entry)
                while self._written < len(self._log) and self._log[self._written]:
                    if self._log_fh is not None:
                        self._log_fh.write(dumps(self._log[self._written]) + "\n")
                        self._log_fh.flush()
                    self._written += 1
            finally:
                if slot is not None:
                    self._finishing -= 1
                    self._finished.notify_all()

    def requests(self, contains: str | None = None) -> list[dict[str, Any]]:
        """Logged requests (those whose target contains ``contains``), oldest first."""
        with self._lock:
            self._finished.wait_for(lambda: self._finishing == 0, timeout=FINISH_WAIT_S)
            return [dict(e) for e in self._log
                    if e and (contains is None or contains in e["target"])]


def _dir_name(name: str, path: PathLike) -> str:
    if not name or name.startswith("_") or "/" in name:
        raise UserError(f"--dir {name}={path}: NAME must be non-empty, not start with '_' "
                        "(reserved for /_harness and /_redirect) and hold no '/'; "
                        "pick another NAME")
    return name


def _served_dir(path: PathLike, flag: str) -> str:
    text = str(path)
    if not os.path.isdir(text):
        what = "not a directory" if os.path.exists(text) else "no such directory"
        sep = "" if flag.endswith("=") else " "
        raise UserError(f"{flag}{sep}{text}: {what}; pass an existing directory of models "
                        "(a model store, a directory of models, or a model root)")
    return os.path.realpath(text)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _params(query: str) -> dict[str, str]:
    """Query parameters, the last value of a repeated name winning."""
    return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))


def _fault_of(params: dict[str, str], enabled: bool) -> Fault | None:
    """The fault a request asks for (validated), or None; HttpError 400 when refused."""
    kind = params.get("fault")
    if kind is None:
        return None
    if not enabled:
        raise HttpError(400, "faults are disabled: start the server with faults=True "
                             "(harness serve --faults)")
    if kind not in FAULTS:
        raise HttpError(400, f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")
    try:
        times = int(params.get("fault-times", "1"))
        delay = float(params.get("fault-delay", "2"))
    except ValueError:
        raise HttpError(400, "fault-times must be an integer and fault-delay a number")
    if times < 0 or not 0 <= delay <= MAX_DELAY_S:
        raise HttpError(400, f"fault-times must be >= 0 and fault-delay within 0..{MAX_DELAY_S:g}")
    return Fault(kind, params.get("fault-token"), times, delay)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    hub: HubServer

    def server_bind(self) -> None:
        """Bind without ``getfqdn`` (a reverse DNS lookup that can take seconds)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, Content-Length on every response."""

    protocol_version = "HTTP/1.1"
    server_version = "tfhub-compat-hubserver"
    timeout = 120

    _body = True
    _status = 0
    _sent = 0
    _headers_sent = False
    _logged = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """Quiet: requests go to the server's own log."""

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def _refuse_method(self) -> None:
        self.close_connection = True  # a request body may follow: do not read it
        message = f"method {self.command} not allowed (GET and HEAD only)"
        self._serve(body=True, route=lambda path, query: self._text(
            405, message, [("Allow", "GET, HEAD")]))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    @property
    def hub(self) -> HubServer:
        return cast(_Server, self.server).hub

    def _raw_target(self) -> str:
        """The request target exactly as received (http.server rewrites a leading '//')."""
        words = self.requestline.split()
        return words[1] if len(words) >= 2 else self.path

    def _serve(self, body: bool, route: Callable[[str, str], None] | None = None) -> None:
        self._body, self._status, self._sent, self._headers_sent = body, 0, 0, False
        self._fault: str | None = None
        raw = self._raw_target()
        path, _, query = raw.partition("?")
        self._logged = route is not None or not (path == "/_harness"
                                                 or path.startswith("/_harness/"))
        self._slot: dict[str, Any] | None = None
        if not self._logged:
            self._guarded(lambda: self._harness(path, query))
            return
        started, when = time.monotonic(), _now()
        try:
            self._guarded(lambda: (route or self._route)(path, query))
        finally:
            self.hub.record({
                "time": when, "client": self.client_address[0], "method": self.command,
                "target": raw, "path": urllib.parse.unquote(path), "status": self._status,
                "bytes": self._sent, "format": _params(query).get("tf-hub-format"),
                "fault": self._fault, "duration_s": round(time.monotonic() - started, 6)},
                self._slot)

    def _finishing(self) -> None:
        """Called before the response's last bytes go out (see ``HubServer.finishing``)."""
        if self._logged and self._slot is None:
            self._slot = self.hub.finishing()

    def _guarded(self, answer: Callable[[], None]) -> None:
        """Run ``answer``; an HttpError becomes its text response, a lost client is dropped."""
        try:
            answer()
        except HttpError as exc:
            if self._headers_sent:
                raise
            self._text(exc.status, exc.message)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            if not self._headers_sent:
                self._text(500, f"internal error: {type(exc).__name__}: {exc}")
            self.close_connection = True
            raise

    # -- responses

    def _start(self, status: int, ctype: str, length: int,
               headers: list[tuple[str, str]] | None = None, last: bool = False) -> None:
        """Send the status line and headers (``last``: no body follows them)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for name, value in headers or []:
            self.send_header(name, value)
        if last:
            self._finishing()
        self.end_headers()
        self._headers_sent = True

    def _bytes(self, status: int, data: bytes, ctype: str,
               headers: list[tuple[str, str]] | None = None) -> None:
        send = self._body and bool(data)
        self._start(status, ctype, len(data), headers, last=not send)
        if send:
            self._finishing()
            self.wfile.write(data)
            self._sent += len(data)

    def _text(self, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> None:
        self._bytes(status, (text + "\n").encode(), "text/plain; charset=utf-8", headers)

    def _json(self, payload: Any) -> None:
        self._bytes(200, dumps(payload).encode(), "application/json")

    def _file(self, fh: BinaryIO, ctype: str, send: int | None = None) -> None:
        """Stream an open file (socket sendfile, 1 MiB at a time) and close it; ``send``:
        stop after that many bytes (the Content-Length stays the file's size)."""
        with fh:
            size = os.fstat(fh.fileno()).st_size
            todo = size if send is None else send
            self._start(200, ctype, size, last=not self._body or not todo)
            if not self._body:
                return
            while self._sent < todo:
                if todo - self._sent <= CHUNK:
                    self._finishing()
                n = self.connection.sendfile(fh, self._sent, min(CHUNK, todo - self._sent))
                if not n:
                    break
                self._sent += n
            if self._sent < size:
                self.close_connection = True

    # -- routes

    def _harness(self, path: str, query: str) -> None:
        if path == "/_harness/health":
            self._text(200, "ok")
        elif path == "/_harness/requests":
            self._json({"requests": self.hub.requests(_params(query).get("contains"))})
        elif path == "/_harness/models":
            self._json({"models": self.hub.models()})
        else:
            raise HttpError(404, "not found: /_harness/ has health, requests, models")

    def _redirect(self, path: str, query: str) -> None:
        bits = path.split("/", 3)  # "", "_redirect", code, rest
        if len(bits) < 4 or not bits[2].isdigit() or int(bits[2]) not in REDIRECTS:
            raise HttpError(404, "not found: /_redirect/<301|302|303|307|308>/<path>")
        safe_parts("/" + bits[3])
        location = "/" + bits[3] + ("?" + query if query else "")
        self._bytes(int(bits[2]), b"", "text/plain; charset=utf-8", [("Location", location)])

    def _route(self, path: str, query: str) -> None:
        parts = safe_parts(path)
        if parts and parts[0] == "_redirect":
            return self._redirect(path, query)
        if parts and parts[0].startswith("_"):
            raise HttpError(404, f"not found: {parts[0]}")
        params = _params(query)
        fault = _fault_of(params, self.hub.faults)
        target, archive = self._locate(parts)
        fmt = "compressed" if archive else params.get("tf-hub-format")
        if fmt not in (None, "compressed", "uncompressed"):
            raise HttpError(400, f"unknown tf-hub-format {fmt!r} (known: compressed, "
                                 "uncompressed)")
        if fmt is not None and target.kind != "model":
            raise HttpError(404, f"not found: {target.url} is not a model (no saved_model.pb "
                                 "or tfhub_module.pb there)")
        if target.kind in ("dir", "top"):
            return self._listing(target)
        entries = scan_model(target.model, target.url)
        if target.kind == "file":
            ctype = mimetypes.guess_type(target.path)[0] or "application/octet-stream"
            return self._file(open_nofollow(target.path), ctype)
        if fmt == "compressed":
            return self._archive(target, entries, fault)
        if fmt == "uncompressed":
            location = "file://" + urllib.parse.quote(target.model)
            return self._bytes(303, target.model.encode("utf-8", "surrogateescape"),
                               "text/plain; charset=utf-8", [("Location", location)])
        return self._index(target, entries)

    def _locate(self, parts: list[str]) -> tuple[Target, bool]:
        """The target, and whether the URL named its archive (``<model>.tar.gz``)."""
        try:
            return self.hub.locate(parts), False
        except HttpError as exc:
            last = parts[-1] if parts else ""
            suffix = next((s for s in ARCHIVE_SUFFIXES if last.endswith(s)), "")
            if exc.status != 404 or not suffix or last == suffix:
                raise
            target = self.hub.locate(parts[:-1] + [last[:-len(suffix)]])
            if target.kind != "model":
                raise
            return target, True

    def _archive(self, target: Target, entries: list[Entry], fault: Fault | None) -> None:
        kind = self._fault = self.hub.take_fault(fault)
        if kind == "slow":
            time.sleep(cast(Fault, fault).delay)
        if kind == "404":
            raise HttpError(404, "not found (fault=404)")
        if kind == "not-tar":
            return self._bytes(200, NOT_TAR, "text/html; charset=utf-8")
        variant = kind if kind in ("nested", "symlink") else ""
        archive = cast(ArchiveCache, self.hub.archives).get(target.model, entries, variant)
        if kind == "truncated":
            self._file(archive, ARCHIVE_TYPE, send=os.fstat(archive.fileno()).st_size // 2)
            self.close_connection = True
        else:
            self._file(archive, ARCHIVE_TYPE)

    def _index(self, target: Target, entries: list[Entry]) -> None:
        rows = [f'<li><a href="{html.escape(target.url.rstrip("/") + _quote(e.rel.split("/")))}">'
                f"{html.escape(e.rel)}</a> ({e.size} bytes)</li>"
                for e in entries if not e.is_dir]
        archive = html.escape(target.url + "?tf-hub-format=compressed")
        self._page(f"Model {target.url}", f'<p><a href="{archive}">compressed archive</a> '
                   f"(what <code>hub.load</code> downloads)</p><ul>{''.join(rows)}</ul>")

    def _listing(self, target: Target) -> None:
        if target.kind == "top":
            found = [(m["url"][len(self.hub.url):], m["path"]) for m in self.hub.models()]
        else:
            found = list(discover(target.path, target.url))
        rows = [f'<li><a href="{html.escape(u)}">{html.escape(u)}</a></li>' for u, _ in found]
        self._page(f"Models under {target.url or '/'}",
                   f"<p>{len(found)} models</p><ul>{''.join(rows)}</ul>")

    def _page(self, title: str, body: str) -> None:
        text = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>"
                f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
                f"{body}</body></html>\n")
        self._bytes(200, text.encode(), "text/html; charset=utf-8")


# ---- harness serve ---------------------------------------------------------------------

def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UserError(f"--port {text}: not a port number; pass 0..65535 (0 picks a free one)")
    return port


def _dirs(values: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--dir {value}: expected NAME=PATH (e.g. --dir encoder=/models/enc)")
        if name in found:
            raise UserError(f"--dir {value}: NAME {name!r} given twice; give each --dir its "
                            "own NAME")
        found[name] = path
    return found


def latest_store(reports_dir: str = "reports") -> str:
    """The model store of the last run: ``<reports>/<run named in latest/RUN>/store``."""
    try:
        with open(os.path.join(reports_dir, "latest", "RUN")) as fh:
            return os.path.join(reports_dir, fh.read().strip(), "store")
    except OSError:
        return os.path.join(reports_dir, "<latest run>", "store")


def serve_command(args: argparse.Namespace) -> int:
    """``harness serve``: serve until Ctrl-C (exit 0); bad flags are one-line UserErrors."""
    store, default_store = args.store, latest_store()
    if store is None and os.path.isdir(default_store):
        store = default_store
    dirs = _dirs(args.dir)
    if store is None and not dirs:
        raise UserError(f"nothing to serve: {default_store} does not exist; pass --store DIR "
                        "(a model store) or --dir NAME=PATH")
    server = HubServer(store, dirs, host=args.host, port=_port(str(args.port)),
                       cache_dir=args.cache, faults=args.faults, log_path=args.log)
    try:
        server.start()
        models = server.models()
        print(f"serving {len(models)} models at {server.url}/ (Ctrl-C to stop)")
        for model in models[:MAX_LISTED]:
            print(f"  {model['url']}")
        if len(models) > MAX_LISTED:
            print(f"  … and {len(models) - MAX_LISTED} more")
        sys.stdout.flush()
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.stop()
    return 0
