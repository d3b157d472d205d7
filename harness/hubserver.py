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
      hub >= 0.10): ``303 See Other``.  tfhub.dev answers a ``gs://`` location here, which
      the library then reads in place; there is no GCS on this machine.  Instrumented (see
      below): ``Location: file://<model root>`` and the model root's absolute path as the
      text body, so the library refuses it with its own ``ValueError: Expected server to
      return a GCS location but received /...`` — the documented behaviour, and what the
      harness records.  Otherwise no Location and a one-line message as the body (the
      library's ValueError then quotes it): no local path is ever shown.
    - ``GET <model>``: an HTML index of the model's files; ``GET <model>/<file>``: the
      file.  ``HEAD`` answers like ``GET`` without a body.
    - ``/_redirect/<code>/<rest>`` (301, 302, 303, 307, 308): that status with ``Location:
      /<rest>?<the same query>``.
    - ``/_harness/requests?contains=S`` (the request log as JSON), ``/_harness/models`` (every
      model root: URL and local path), ``/_harness/health``; these are not logged, and
      served only with ``instrument=True`` (the harness's own runs) to a loopback client
      naming a loopback Host; 404 otherwise.

Connections: one selector thread accepts (it never blocks on a client), reads each request
head itself and hands complete requests to a pool of ``workers`` threads; it answers
``/_harness/health`` and its own errors without the pool, so they never wait behind it.  At
most ``max_connections`` are open; a further one is answered ``503`` with ``Retry-After``
as soon as its request line shows it is not a health check (within ``OVERFLOW_WAIT_S``).  A
head must arrive whole within ``header_timeout`` seconds (an idle keep-alive connection is
closed after as long), else ``408``; a client that takes no bytes of its answer for
``send_timeout`` seconds is dropped.

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
import collections
import contextlib
import datetime
import email.utils
import errno
import gzip
import hashlib
import html
import io
import ipaddress
import mimetypes
import os
import queue
import selectors
import shutil
import socket
import stat
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Sequence, Union, cast

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
SERVER_VERSION = "tfhub-compat-hubserver"
HEALTH = "/_harness/health"
WORKERS = 32  # threads that answer requests
MAX_CONNECTIONS = 256  # open connections; over it a new one gets a 503
HEADER_TIMEOUT_S = 5.0  # a request head must arrive whole within this (idle keep-alive too)
SEND_TIMEOUT_S = 30.0  # a client that takes no bytes of its answer for this long is dropped
RETRY_AFTER_S = 1
OVERFLOW_WAIT_S = 1.0  # how long a connection over the cap may take to show its request line
LINGER_S = 2.0  # after the last answer, how long to read what a client still sends
MAX_HEAD = 65536
RECV_SIZE = 65536
ACCEPT_BATCH = 256  # connections accepted per turn of the loop
TURN_READS = 64  # reads per turn of connections that have sent part of a request
SWEEP_S = 0.1  # how often the loop checks deadlines
BACKLOG = 1024
KEPT_REQUESTS = 10000  # requests kept in memory by a server that is not instrumented
NOT_INSTRUMENTED = ("not found: /_harness/ is the harness's instrumentation, served only by "
                    "its own runs' server (instrument=True) to loopback clients")
UNCOMPRESSED_REFUSED = ("this server does not serve uncompressed models (no gs:// location): "
                        "load with TFHUB_MODEL_LOAD_FORMAT=COMPRESSED or AUTO (the default)")
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

    ``start()`` serves in daemon threads (a context manager does start/stop);
    ``serve_forever()`` blocks until Ctrl-C (KeyboardInterrupt propagates) then stops.
    ``url`` is ``http://HOST:PORT`` (no trailing slash); ``requests()`` is the request log.

    One selector thread accepts and reads request heads, a pool of ``workers`` threads
    answers them; at most ``max_connections`` are open (a further one gets a ``503``), a
    head must arrive within ``header_timeout`` seconds and a client must take some of its
    answer every ``send_timeout`` seconds.  ``instrument=True`` (the harness's own runs)
    serves ``/_harness/*`` and the model roots' local paths, to loopback clients only.
    """

    def __init__(self, store: PathLike | None = None,
                 dirs: Mapping[str, PathLike] | None = None, host: str = "127.0.0.1",
                 port: int = 0, cache_dir: PathLike | None = None, faults: bool = False,
                 log_path: PathLike | None = None, instrument: bool = False,
                 workers: int = WORKERS, max_connections: int = MAX_CONNECTIONS,
                 header_timeout: float = HEADER_TIMEOUT_S,
                 send_timeout: float = SEND_TIMEOUT_S) -> None:
        self.store = _served_dir(store, "--store") if store is not None else None
        self.dirs = {_dir_name(n, p): _served_dir(p, f"--dir {n}=") for n, p in
                     (dirs or {}).items()}
        self.host, self.port = host, int(port)
        self.faults, self.instrument = faults, instrument
        self.workers = int(_positive(workers, "--workers", integer=True))
        self.max_connections = int(_positive(max_connections, "--max-connections",
                                             integer=True))
        self.header_timeout = _positive(header_timeout, "--header-timeout")
        self.send_timeout = _positive(send_timeout, "--send-timeout")
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self.log_path = str(log_path) if log_path is not None else None
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._finishing = 0  # responses whose last byte is being sent, not yet logged
        self._written = 0  # entries written to log_path
        self._log: list[dict[str, Any]] = []
        self._tokens: dict[str, int] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._stopping = threading.Event()
        self._loop: _Loop | None = None
        self._thread: threading.Thread | None = None
        self._pool: list[threading.Thread] = []
        self._log_fh: Any = None
        self._own_cache: str | None = None
        self.archives: ArchiveCache | None = None

    # -- life cycle

    def start(self) -> HubServer:
        """Bind and serve in daemon threads; UserError if the address cannot be used."""
        if self._loop is not None:
            return self
        self._open_files()
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.create_server((self.host, self.port), family=family,
                                            backlog=BACKLOG)
        except (OSError, OverflowError) as exc:
            self._close_files()
            reason = getattr(exc, "strerror", None) or str(exc)
            raise UserError(f"--host {self.host} --port {self.port}: cannot listen there "
                            f"({reason}); pass a free --port (0 picks one) or another --host")
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        if not _is_loopback(self.host):
            print(f"warning: serving on {self.host}:{self.port}, not loopback: other machines "
                  "can download every served model", file=sys.stderr)
        self._stopping.clear()
        self._loop = _Loop(self, listener)
        self._pool = [threading.Thread(target=self._work, args=(self._loop,), daemon=True,
                                       name=f"hubserver-{self.port}-worker-{i}")
                      for i in range(self.workers)]
        for worker in self._pool:
            worker.start()
        self._thread = threading.Thread(target=self._loop.run, name=f"hubserver-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (open connections are closed, answers under way cut short), close
        the log, remove the temporary cache directory."""
        loop, self._loop = self._loop, None
        if loop is not None:
            self._stopping.set()
            loop.stop()
            if self._thread is not None:
                self._thread.join(timeout=FINISH_WAIT_S * 2)
            for _ in self._pool:
                loop.jobs.put(None)
            deadline = time.monotonic() + FINISH_WAIT_S
            for worker in self._pool:
                worker.join(timeout=max(0.0, deadline - time.monotonic()))
            for conn, _ in loop.returned:  # given back after the loop had ended
                conn.sock.close()
        self._close_files()

    def _work(self, loop: _Loop) -> None:
        """A worker: answer one request of each connection handed over, then give it back."""
        while True:
            conn = loop.jobs.get()
            if conn is None:
                return
            keep = False
            try:
                if not self._stopping.is_set():
                    if not conn.served:
                        with contextlib.suppress(OSError):
                            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.sock.settimeout(self.send_timeout)
                    keep = not _Handler(conn.sock, conn.addr, self, conn.head).close_connection
            except (ConnectionError, TimeoutError):
                pass
            except Exception:
                _print_error()
            finally:
                keep = keep and not self._stopping.is_set()
                if not keep:
                    _close_after_answer(conn.sock, loop.closing_lock)
                loop.give_back(conn, keep)

    def stats(self) -> dict[str, int]:
        """Connections open now (``regular`` under the cap, ``overflow`` over it, ``closing``,
        ``busy``: with a worker) and counts so far (``refused``: 503s, ``header_timeouts``:
        408s, ``send_timeouts``: clients dropped for not reading their answer)."""
        loop = self._loop
        found = {k: 0 for k in ("regular", "overflow", "closing", "busy", "refused",
                                "header_timeouts", "send_timeouts")}
        with self._lock:
            found.update(self._counts)
        if loop is not None:
            found.update(loop.counts, busy=len(loop.busy))
        return found

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def instrumented(self, addr: Any, host: str | None) -> bool:
        """Whether a request from ``addr`` naming ``host`` (its Host header) is shown the
        instrumentation: only with ``instrument=True``, from a loopback address, for a
        loopback Host (a web page that rebinds its name to 127.0.0.1 is not)."""
        return self.instrument and _is_loopback(str(addr[0])) and _host_is_loopback(host)

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
            self._close_files()
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
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
                excess = len(self._log) - KEPT_REQUESTS
                if not self.instrument and excess >= KEPT_REQUESTS // 10:  # a mirror's memory
                    drop = min(excess, self._written)  # (written entries only: all complete)
                    del self._log[:drop]
                    self._written -= drop
            finally:
                if slot is not None:
                    self._finishing -= 1
                    self._finished.notify_all()

    def requests(self, contains: str | None = None) -> list[dict[str, Any]]:
        """Logged requests (those whose target contains ``contains``), oldest first; not
        instrumented, only the last KEPT_REQUESTS or so (``log_path`` has every one)."""
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
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host.lower() == "localhost"
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return addr.is_loopback or bool(mapped is not None and mapped.is_loopback)


def _host_is_loopback(header: str | None) -> bool:
    """Whether a Host header names a loopback address (no header: as HTTP/1.0 sends)."""
    if header is None:
        return True
    host = header.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return _is_loopback(host)


def _positive(value: float, flag: str, integer: bool = False) -> float:
    """``value`` if it is a positive finite number (an int where ``integer``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not 0 < value < float("inf"):
        what = "a positive whole number" if integer else "a positive number of seconds"
        raise UserError(f"{flag} {value}: expected {what}")
    return value


def _close_after_answer(sock: socket.socket, lock: threading.Lock) -> None:
    """Close a connection whose last answer is sent: FIN, what the client sent meanwhile
    read (unread bytes would make the close a reset that can lose the answer), close."""
    with lock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(False)
        for _ in range(16):
            if not sock.recv(RECV_SIZE):
                break
    sock.close()


def _print_error() -> None:
    """The traceback of the exception being handled, on stderr (a bug to fix); it never
    raises: a worker outlives a closed stderr."""
    with contextlib.suppress(Exception):
        traceback.print_exc()


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


# ---- connections: one selector thread, a pool of workers -------------------------------

READING, WRITING, LINGERING, BUSY = "reading", "writing", "lingering", "busy"


class _Conn:
    """One client connection and what the loop knows of it."""

    __slots__ = ("sock", "addr", "buf", "scanned", "deadline", "state", "kind", "out",
                 "linger", "served", "events", "head")

    def __init__(self, sock: socket.socket, addr: Any, deadline: float, kind: str) -> None:
        self.sock, self.addr, self.deadline, self.kind = sock, addr, deadline, kind
        self.buf = bytearray()  # received, not yet handed on (the next request's bytes)
        self.scanned = 0  # how far buf is known to hold no end of head
        self.state = READING
        self.out = b""  # what the loop still has to send (its own short answers)
        self.linger = True  # after that answer, read until the client closes (or not)
        self.served = 0  # requests answered on this connection
        self.events = 0  # what the selector watches for (0: not registered)
        self.head = b""  # the request head handed to a worker


def _head_end(buf: bytearray, start: int) -> int:
    """The index just past the blank line that ends the request head in ``buf``, or -1."""
    ends = [i + n for i, n in ((buf.find(b"\n\r\n", start), 3), (buf.find(b"\n\n", start), 2))
            if i >= 0]
    return min(ends) if ends else -1


def _request_line(buf: bytes | bytearray) -> tuple[str, str]:
    """(method, path) of a request whose first line is complete."""
    words = bytes(buf[:buf.find(b"\n")]).decode("latin-1").split()
    return (words[0], words[1].partition("?")[0]) if len(words) >= 2 else ("", "")


def _host_header(head: bytes) -> str | None:
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            return value.strip().decode("latin-1")
    return None


def _answer_bytes(status: int, text: str, headers: Sequence[tuple[str, str]] = (),
                  body: bool = True) -> bytes:
    """A whole short text response, closing the connection (the loop's own answers)."""
    data = (text + "\n").encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             f"Server: {SERVER_VERSION}", f"Date: {email.utils.formatdate(usegmt=True)}",
             "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(data)}",
             "Connection: close"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (data if body else b"")


class _Loop:
    """The accept/selector thread: it never blocks on a client.

    It accepts, reads each request head itself (within ``header_timeout``) and hands
    complete requests to the worker pool; it answers ``/_harness/health``, the 503 of
    connections over ``max_connections`` and the 408 of heads that do not arrive itself,
    so none of them waits behind the pool.  Connections come back from the workers for
    their next request (keep-alive), or closed by them (after their last answer).
    """

    def __init__(self, hub: HubServer, listener: socket.socket) -> None:
        self.hub, self.listener = hub, listener
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ)
        self.jobs: queue.SimpleQueue[_Conn | None] = queue.SimpleQueue()
        self.watched: set[_Conn] = set()  # registered with the selector
        self.busy: set[_Conn] = set()  # handed to the pool
        self.overflow: dict[_Conn, None] = {}  # over the cap, oldest first
        self.returned: collections.deque[tuple[_Conn, bool]] = collections.deque()
        self.ready: list[_Conn] = []  # complete requests of this turn, for the pool
        self.closing_lock = threading.Lock()  # a worker closing its socket / stop shutting it
        self.counts = {"regular": 0, "overflow": 0, "closing": 0}
        self.overflow_cap = max(16, hub.max_connections // 4)
        self.stopping = False
        self.paused_until = 0.0  # accept paused (out of file descriptors) until then

    # -- what other threads call

    def give_back(self, conn: _Conn, keep: bool) -> None:
        """A worker is done with ``conn``: serve its next request (``keep``) or close it."""
        self.returned.append((conn, keep))
        self.wake()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def stop(self) -> None:
        self.stopping = True
        self.wake()

    # -- the loop

    def run(self) -> None:
        sweep = 0.0
        fresh: list[_Conn] = []  # readable, nothing received yet: a new request
        pending: list[_Conn] = []  # readable, with part of a request already
        try:
            while not self.stopping:
                for key, mask in self.sel.select(max(0.0, sweep - time.monotonic())):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    elif mask & selectors.EVENT_WRITE:
                        self._write(key.data)
                    elif key.data.buf:
                        pending.append(key.data)
                    else:
                        fresh.append(key.data)
                # a request that starts now (a health check) comes before the rest of a
                # burst, which is read TURN_READS at a time: a turn stays short
                for conn in fresh + pending[:TURN_READS]:
                    self._read(conn)
                fresh.clear()
                pending.clear()
                self._take_returned()
                # the pool gets this turn's requests only now: its threads do not compete
                # with this one for the GIL while it goes through a burst of events
                for conn in self.ready:
                    self.jobs.put(conn)
                self.ready.clear()
                now = time.monotonic()
                if now >= sweep:
                    self._sweep(now)
                    sweep = now + SWEEP_S
        finally:
            self._close_all()

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.sel.unregister(self.listener)  # out of descriptors: wait a little
                    self.paused_until = time.monotonic() + SWEEP_S
                    return
                continue  # ECONNABORTED and the like: that client is gone
            sock.setblocking(False)
            now, hub = time.monotonic(), self.hub
            if self.counts["regular"] < hub.max_connections:
                conn = _Conn(sock, addr, now + hub.header_timeout, "regular")
            else:  # over the cap: a 503 once its request line says it is not a health check
                if len(self.overflow) >= self.overflow_cap:
                    self._refuse(next(iter(self.overflow)))
                conn = _Conn(sock, addr, now + min(OVERFLOW_WAIT_S, hub.header_timeout),
                             "overflow")
                self.overflow[conn] = None
            self.counts[conn.kind] += 1
            self._watch(conn, selectors.EVENT_READ)
            self._read(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close(conn)
        if not data:
            return self._close(conn)  # the client is gone (or done, when lingering)
        if conn.state == READING:
            conn.buf += data
            self._parse(conn)

    def _parse(self, conn: _Conn) -> None:
        """Act on what ``conn`` has sent: a complete head, a request line, too much."""
        buf = conn.buf
        while not conn.scanned and buf[:1] in (b"\r", b"\n"):  # empty lines before a request
            del buf[:1]
        end = _head_end(buf, conn.scanned)
        if end < 0:
            conn.scanned = max(0, len(buf) - 2)
            if len(buf) > MAX_HEAD:
                self._answer(conn, 431, f"request head over {MAX_HEAD} bytes")
            elif conn.kind == "overflow" and b"\n" in buf and not self._is_health(buf):
                self._refuse(conn)
            return
        head = bytes(buf[:end])
        del buf[:end]
        conn.scanned = 0
        if end > MAX_HEAD:
            self._answer(conn, 431, f"request head over {MAX_HEAD} bytes")
        elif self._is_health(head):
            method = _request_line(head)[0]
            conn.linger = bool(buf)  # (a client that sent no more has nothing to drain)
            if self.hub.instrumented(conn.addr, _host_header(head)):
                self._answer(conn, 200, "ok", body=method != "HEAD")
            else:
                self._answer(conn, 404, NOT_INSTRUMENTED, body=method != "HEAD")
        elif conn.kind == "overflow":
            self._refuse(conn)
        else:
            self._unwatch(conn)
            conn.state, conn.head = BUSY, head
            self.busy.add(conn)
            self.ready.append(conn)  # to the pool at the end of this turn

    @staticmethod
    def _is_health(buf: bytes | bytearray) -> bool:
        method, path = _request_line(buf)
        return method in ("GET", "HEAD") and path == HEALTH

    def _take_returned(self) -> None:
        while self.returned:
            conn, keep = self.returned.popleft()
            self.busy.discard(conn)
            if not keep or self.stopping:
                self._close(conn)  # (its worker has closed the socket already)
                continue
            try:
                conn.sock.setblocking(False)
            except OSError:
                self._close(conn)
                continue
            conn.state, conn.head = READING, b""
            conn.served += 1
            conn.deadline = time.monotonic() + self.hub.header_timeout
            self._watch(conn, selectors.EVENT_READ)
            if conn.buf:
                self._parse(conn)

    def _sweep(self, now: float) -> None:
        if self.paused_until and now >= self.paused_until and not self.stopping:
            self.paused_until = 0.0
            self.sel.register(self.listener, selectors.EVENT_READ)
        for conn in [c for c in self.watched if now >= c.deadline]:
            if conn.state != READING:
                self._close(conn)  # an answer nobody reads, or a closing client that lingers
            elif conn.kind == "overflow":
                self._refuse(conn)
            elif conn.buf or not conn.served:
                self.hub.count("header_timeouts")
                self._answer(conn, 408, f"the request did not arrive within "
                                        f"{self.hub.header_timeout:g} s")
            else:
                self._close(conn)  # an idle keep-alive connection

    # -- answers and closing

    def _refuse(self, conn: _Conn) -> None:
        self.hub.count("refused")
        self._answer(conn, 503, f"busy: {self.hub.max_connections} connections open, the "
                                f"most this server takes; retry in {RETRY_AFTER_S} s",
                     [("Retry-After", str(RETRY_AFTER_S))])

    def _answer(self, conn: _Conn, status: int, text: str,
                headers: Sequence[tuple[str, str]] = (), body: bool = True) -> None:
        """Send a short answer from this thread, then close the connection."""
        self._kind(conn, "closing")
        conn.state, conn.out = WRITING, _answer_bytes(status, text, headers, body)
        conn.deadline = time.monotonic() + self.hub.send_timeout
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return self._close(conn)
        conn.out = conn.out[sent:]
        if conn.out:
            self._watch(conn, selectors.EVENT_WRITE)
        elif conn.linger:
            self._linger(conn)
        else:
            self._close(conn)

    def _linger(self, conn: _Conn) -> None:
        """Close after the last answer: FIN first, then read until the client closes (at
        most LINGER_S), so that bytes it still sends do not reset the answer away."""
        self._kind(conn, "closing")
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._close(conn)
        if self.stopping or self.counts["closing"] > self.hub.max_connections:
            return self._close(conn)
        conn.state, conn.deadline = LINGERING, time.monotonic() + LINGER_S
        self._watch(conn, selectors.EVENT_READ)

    def _kind(self, conn: _Conn, kind: str | None) -> None:
        if conn.kind == kind:
            return
        if conn.kind:
            self.counts[conn.kind] -= 1
        self.overflow.pop(conn, None)
        conn.kind = kind or ""
        if kind:
            self.counts[kind] += 1

    def _watch(self, conn: _Conn, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self.sel.modify(conn.sock, events, conn)
        else:
            self.sel.register(conn.sock, events, conn)
        conn.events = events
        self.watched.add(conn)

    def _unwatch(self, conn: _Conn) -> None:
        if conn.events:
            self.sel.unregister(conn.sock)
            conn.events = 0
        self.watched.discard(conn)

    def _close(self, conn: _Conn) -> None:
        self._unwatch(conn)
        self._kind(conn, None)
        conn.sock.close()

    def _close_all(self) -> None:
        """On stop: close every connection; those a worker holds are shut down first (its
        send fails at once) and closed when it gives them back (or after FINISH_WAIT_S)."""
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.sel.unregister(self.listener)
        self.listener.close()
        for conn in list(self.watched):
            self._close(conn)
        for conn in list(self.busy):
            with self.closing_lock, contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + FINISH_WAIT_S
        while self.busy and time.monotonic() < deadline:
            self.sel.select(0.05)
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
            while self.returned:
                conn, _ = self.returned.popleft()
                self.busy.discard(conn)
                self._close(conn)
        for conn in list(self.busy):
            self._close(conn)
        self.sel.close()
        self._wake_r.close()
        self._wake_w.close()


class _SocketWriter(io.BufferedIOBase):
    """``wfile``: every write is a ``sendall`` (within the socket's timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


class _Handler(BaseHTTPRequestHandler):
    """One request of a connection (HTTP/1.1 keep-alive, Content-Length on every response),
    its head already read by the loop; ``close_connection`` says whether to close after."""

    protocol_version = "HTTP/1.1"
    server_version = SERVER_VERSION

    _body = True
    _status = 0
    _sent = 0
    _headers_sent = False
    _logged = True

    def __init__(self, sock: socket.socket, addr: Any, hub: HubServer, head: bytes) -> None:
        self.request = self.connection = sock
        self.client_address, self.hub = addr, hub
        self.rfile = io.BytesIO(head)
        self.wfile = _SocketWriter(sock)
        self.close_connection = True
        self.handle_one_request()

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

    def _instrumented(self) -> bool:
        return self.hub.instrumented(self.client_address, self.headers.get("Host"))

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
            if self._headers_sent:  # too late for its answer: cut the connection
                _print_error()
                self.close_connection = True
                return
            self._text(exc.status, exc.message)
        except TimeoutError:
            self.hub.count("send_timeouts")
            self.close_connection = True
        except ConnectionError:
            self.close_connection = True
        except Exception as exc:
            _print_error()  # (before the answer: it is out once the client has the 500)
            if not self._headers_sent:  # the message may name local paths
                detail = f": {exc}" if self._instrumented() else " (see the server's output)"
                self._text(500, f"internal error: {type(exc).__name__}{detail}")
            self.close_connection = True

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
        if not self._instrumented():
            raise HttpError(404, NOT_INSTRUMENTED)
        if path == HEALTH:
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
        if fmt == "uncompressed" and not self._instrumented():  # no local path: a message
            return self._text(303, UNCOMPRESSED_REFUSED)
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
            self.hub._stopping.wait(cast(Fault, fault).delay)
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


def _number(text: str, flag: str, integer: bool = False) -> float:
    try:
        value: float = int(text) if integer else float(text)
    except ValueError:
        raise UserError(f"{flag} {text}: expected a positive "
                        f"{'whole number' if integer else 'number of seconds'}")
    return _positive(value, flag, integer)


def serve_command(args: argparse.Namespace) -> int:
    """``harness serve``: serve until Ctrl-C, SIGTERM or SIGHUP (each a clean stop, exit 0);
    bad flags are one-line UserErrors."""
    from .interrupts import interrupted_by
    store, default_store = args.store, latest_store()
    if store is None and os.path.isdir(default_store):
        store = default_store
    dirs = _dirs(args.dir)
    if store is None and not dirs:
        raise UserError(f"nothing to serve: {default_store} does not exist; pass --store DIR "
                        "(a model store) or --dir NAME=PATH")
    limits: dict[str, float] = {}
    for name, flag, integer in (("workers", "--workers", True),
                                ("max_connections", "--max-connections", True),
                                ("header_timeout", "--header-timeout", False),
                                ("send_timeout", "--send-timeout", False)):
        if getattr(args, name) is not None:
            limits[name] = _number(str(getattr(args, name)), flag, integer)
    server = HubServer(store, dirs, host=args.host, port=_port(str(args.port)),
                       cache_dir=args.cache, faults=args.faults, log_path=args.log,
                       instrument=args.instrument, **limits)  # type: ignore[arg-type]
    stopped_by = None
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
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP (harness.interrupts)
        stopped_by = interrupted_by(exc)[0]
    finally:
        server.stop()  # sockets closed, the temporary cache directory removed
    if stopped_by is not None:
        print(f"stopped ({stopped_by})", file=sys.stderr)
    return 0
