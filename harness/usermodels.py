"""Users' own models: ``--model PATH_OR_URL`` and ``models: [{name, handle, ...}]``.

A user's model is a directory or a URL served with the TF Hub hosting protocol.
Its format is detected from its files (``tfhub_module.pb``: TF1 Hub format;
``keras_metadata.pb``: a Keras SavedModel; otherwise a TF2 SavedModel) unless
given; a model that cannot be read is a one-line ``UserError`` naming it and why.

A URL's archive is hostile input: it is streamed (never written to disk) under caps
on the bytes received and unpacked and an overall deadline (``FetchLimits``), and
every member is checked with tarfile's ``data`` filter semantics (PEP 706): no
absolute names, nothing landing outside the model directory (``..``, links, earlier
symlink members followed), no device files or FIFOs.
"""
from __future__ import annotations

import dataclasses
import http.client
import os
import posixpath
import re
import socket
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Any, Callable

from .errors import UserError

FORMATS = ("tf1_hub", "saved_model", "keras_saved_model")
CHOICES = ("auto",) + FORMATS
NAME = re.compile(r"^[A-Za-z0-9_-]+$")
MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class FetchLimits:
    """Caps on checking a user's model by URL: ``settings.fetch`` and, per model, the
    same keys on its ``models:`` entry (``--model`` takes the matrix's settings)."""

    max_download_mb: float = 2048  # MiB received (the compressed archive)
    max_extract_mb: float = 8192  # MiB the archive unpacks to
    max_ratio: float = 100  # unpacked / received, once 256 MiB are unpacked
    deadline_s: float = 60  # the whole fetch: connect, redirects, the last byte


FETCH_KEYS = tuple(f.name for f in dataclasses.fields(FetchLimits))
RATIO_FROM = 256 * MiB  # the ratio cap applies past this many unpacked bytes
MAX_MEMBERS = 100_000
CHUNK = MiB
# PEP 706's filter where this Python has it (3.12, 3.11.4, 3.10.12, ...), else _fallback_filter
_DATA_FILTER: Callable[..., Any] | None = getattr(tarfile, "data_filter", None)
_KINDS = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
          tarfile.FIFOTYPE: "a FIFO"}


def is_url(handle: str) -> bool:
    try:
        return urllib.parse.urlparse(handle).scheme in ("http", "https")
    except ValueError:  # e.g. "http://[::1/x": not a URL we can fetch; _url_names says why
        return handle.lower().startswith(("http://", "https://"))


def format_of(names: set[str]) -> str | None:
    """The format a model root with these file names has (None: not a SavedModel)."""
    if "saved_model.pb" not in names and "saved_model.pbtxt" not in names:
        return None
    if "tfhub_module.pb" in names:
        return "tf1_hub"
    if "keras_metadata.pb" in names:
        return "keras_saved_model"
    return "saved_model"


def _dir_names(path: str, where: str) -> set[str]:
    if not os.path.exists(path):
        raise UserError(f"{where}: {path} does not exist; give a model directory or URL")
    if not os.path.isdir(path):
        raise UserError(f"{where}: {path} is not a directory; give the directory that holds "
                        "saved_model.pb")
    try:
        return set(os.listdir(path))
    except OSError as exc:
        raise UserError(f"{where}: cannot read {path}: {exc.strerror}")


class _Refused(Exception):
    """The server or its archive broke a rule; the message follows ``where: ``."""


class _Expired(Exception):
    """The fetch's deadline passed."""


class _Deadline:
    """One fetch's overall deadline: the time left is every new connection's timeout, and
    when it passes a timer shuts every connection down, waking a recv() that blocks."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self.received = 0  # bytes of the body so far (the caps and the messages use it)
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.end

    def left(self) -> float:
        left = self.end - time.monotonic()
        if self.expired or left <= 0:
            raise _Expired
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown, also for a TLS socket: no TLS close_notify
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # closed, or detached into its TLS socket
        pass


def _watched(base: Any, deadline: _Deadline) -> Any:
    """``base`` (an HTTP(S)Connection class) whose sockets ``deadline`` watches."""

    class Watched(base):  # type: ignore[valid-type, misc]
        def connect(self) -> None:
            self.timeout = deadline.left()
            create: Any = self._create_connection  # type: ignore[has-type]

            def create_watched(address: Any, timeout: Any, source: Any = None) -> socket.socket:
                sock = create(address, timeout, source)
                deadline.watch(sock)
                return sock

            self._create_connection = create_watched
            super().connect()
            deadline.watch(self.sock)  # the TLS socket wrapping it, if any

    return Watched


class _Watching:
    """A urllib handler whose connections are watched by the fetch's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()  # type: ignore[call-arg]
        self.deadline = deadline

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(  # type: ignore[misc]
            _watched(http_class, self.deadline), req, **kwargs)


class _HTTP(_Watching, urllib.request.HTTPHandler):
    pass


class _HTTPS(_Watching, urllib.request.HTTPSHandler):
    pass


class _Redirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects (301, 302, 303, 307, 308; at most 10), to http(s) URLs only."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        if urllib.parse.urlparse(newurl).scheme not in ("http", "https"):
            fp.close()
            raise _Refused(f"{req.full_url} redirects to {newurl!r}, not an http(s) URL; "
                           "refusing it")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _hint(key: str) -> str:
    return f"if the model is real, raise {key} (settings.fetch.{key}, or on its models: entry)"


class _Inflating:
    """The response's gzip stream, unpacked as tarfile reads it; the caps are checked as
    bytes arrive, so reading stops as soon as one is crossed."""

    def __init__(self, resp: Any, limits: FetchLimits, deadline: _Deadline) -> None:
        self.resp, self.limits, self.deadline = resp, limits, deadline
        self.unpacked = 0
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        most = min(size, CHUNK) if size and size > 0 else CHUNK
        while True:
            if self._z.eof:
                return b""
            if not self._tail:
                self._tail = self._receive()
            try:
                data = self._z.decompress(self._tail, most)
            except zlib.error as exc:
                raise tarfile.ReadError(f"not gzip data: {exc}")
            self._tail = self._z.unconsumed_tail
            if data:
                self._count(len(data))
                return data

    def _receive(self) -> bytes:
        self.deadline.left()
        try:
            raw = self.resp.read1(CHUNK)
        except (OSError, http.client.HTTPException):
            if self.deadline.passed():
                raise _Expired
            raise
        if self.deadline.passed():  # a connection shut down at the deadline reads b""
            raise _Expired
        if not raw:
            raise tarfile.ReadError(f"the archive ends early, after {self.deadline.received} "
                                    "bytes")
        self.deadline.received += len(raw)
        cap = self.limits.max_download_mb
        if self.deadline.received > cap * MiB:
            raise _Refused(f"the server sent more than {cap:g} MiB (max_download_mb); "
                           f"refusing it; {_hint('max_download_mb')}")
        return raw

    def _count(self, n: int) -> None:
        self.unpacked += n
        cap, ratio = self.limits.max_extract_mb, self.limits.max_ratio
        if self.unpacked > cap * MiB:
            raise _Refused(f"the archive unpacks to more than {cap:g} MiB (max_extract_mb); "
                           f"refusing it; {_hint('max_extract_mb')}")
        received = self.deadline.received
        if self.unpacked > RATIO_FROM and self.unpacked > ratio * received:
            raise _Refused(f"the archive inflates more than {ratio:g}x "
                           f"({self.unpacked // MiB} MiB from {received / MiB:.1f} MiB: "
                           f"a compression bomb?); refusing it; {_hint('max_ratio')}")


class _SymlinkLoop(Exception):
    pass


def _walk(path: str, links: dict[str, str]) -> str | None:
    """Where ``path`` (relative to the model root) lands once the archive's earlier
    symlink members are followed, as extracting it would; None: outside the root."""
    out: list[str] = []
    todo = path.split("/")[::-1]
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
        target = links.get("/".join(out))
        if target is not None:
            if target.startswith("/"):
                return None
            hops += 1
            if hops > 40:
                raise _SymlinkLoop
            out.pop()
            todo.extend(target.split("/")[::-1])
    return "/".join(out)


def _link_kind(member: tarfile.TarInfo) -> str:
    return "symlink" if member.issym() else "hard link"


def _fallback_filter(member: tarfile.TarInfo) -> str | None:
    """tarfile's ``data`` filter (PEP 706) for a Python without it; a reason, or None."""
    if _walk(member.name, {}) is None:
        return "would land outside the model directory"
    if not (member.isreg() or member.islnk() or member.isdir() or member.issym()):
        return f"is {_KINDS.get(member.type, 'a special file')}"
    if member.islnk() or member.issym():
        if member.linkname.startswith("/"):
            return f"is a {_link_kind(member)} to the absolute path {member.linkname!r}"
        base = posixpath.dirname(member.name) if member.issym() else ""
        if _walk(posixpath.join(base, member.linkname), {}) is None:
            return (f"is a {_link_kind(member)} to {member.linkname!r}, outside the model "
                    "directory")
    return None


def _filtered(member: tarfile.TarInfo, dest: str) -> str | None:
    if _DATA_FILTER is None:
        return _fallback_filter(member)
    try:
        _DATA_FILTER(member, dest)
    except tarfile.OutsideDestinationError:
        return "would land outside the model directory"
    except tarfile.SpecialFileError:
        return f"is {_KINDS.get(member.type, 'a special file')}"
    except tarfile.AbsoluteLinkError:
        return f"is a {_link_kind(member)} to the absolute path {member.linkname!r}"
    except tarfile.LinkOutsideDestinationError:
        return f"is a {_link_kind(member)} to {member.linkname!r}, outside the model directory"
    except tarfile.FilterError as exc:
        return f"is refused by tarfile's data filter ({exc})"
    return None


def _refusal(member: tarfile.TarInfo, links: dict[str, str], dest: str) -> str | None:
    """Why extracting ``member`` (after the earlier members) would be unsafe, or None."""
    name = member.name
    if name.startswith(("/", os.sep)) or os.path.isabs(name):
        return "has an absolute path"
    reason = _filtered(member, dest)
    if reason:
        return reason
    try:  # the filter sees no earlier member; on disk, their symlinks would be followed
        if _walk(name, links) is None:
            return "would land outside the model directory through a symlink member"
        if member.issym() or member.islnk():
            base = posixpath.dirname(name) if member.issym() else ""
            if _walk(posixpath.join(base, member.linkname), links) is None:
                return (f"is a {_link_kind(member)} to {member.linkname!r}, outside the model "
                        "directory through a symlink member")
        parent = _walk(posixpath.dirname(name), links)
    except _SymlinkLoop:
        return "is reached through a loop of symlink members"
    leaf = posixpath.basename(name.rstrip("/"))
    if parent is not None and leaf not in ("", ".", ".."):
        key = posixpath.join(parent, leaf) if parent else leaf
        if member.issym():
            links[key] = member.linkname
        else:
            links.pop(key, None)
    return None


def _members(tar: tarfile.TarFile, where: str, limits: FetchLimits) -> set[str]:
    names: set[str] = set()
    links: dict[str, str] = {}
    declared = 0
    with tempfile.TemporaryDirectory(prefix="tfhub-compat-check-") as dest:  # stays empty
        for count, member in enumerate(tar, 1):
            if count > MAX_MEMBERS:
                raise _Refused(f"the archive has more than {MAX_MEMBERS} members; refusing it")
            reason = _refusal(member, links, dest)
            if reason:
                raise _Refused(f"archive member {member.name!r} {reason}; refusing it")
            if member.isreg():
                declared += member.size
                if declared > limits.max_extract_mb * MiB:  # before reading its bytes
                    raise _Refused(f"the archive unpacks to more than "
                                   f"{limits.max_extract_mb:g} MiB (max_extract_mb; member "
                                   f"{member.name!r} alone is {member.size // MiB} MiB); "
                                   f"refusing it; {_hint('max_extract_mb')}")
            names.add(posixpath.normpath(member.name).split("/")[0])
    return names - {".", ""}


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_HTTP(deadline), _HTTPS(deadline), _Redirects())


class FetchError(Exception):
    """A download failed: the reason, and the HTTP status when the server answered one."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


def fetch_bytes(url: str, limits: FetchLimits | None = None) -> bytes:
    """The body ``url`` (http or https) answers, under ``limits``' deadline and
    ``max_download_mb``; a ``FetchError`` says why not (``status``: an HTTP error's)."""
    limits = limits or FetchLimits()
    deadline = _Deadline(limits.deadline_s)
    chunks: list[bytes] = []
    try:
        with deadline, _opener(deadline).open(url, timeout=deadline.left()) as resp:
            while True:
                deadline.left()
                chunk = resp.read1(CHUNK)
                if deadline.passed():
                    raise _Expired
                if not chunk:
                    return b"".join(chunks)
                deadline.received += len(chunk)
                if deadline.received > limits.max_download_mb * MiB:
                    raise _Refused(f"it sent more than {limits.max_download_mb:g} MiB "
                                   "(settings.fetch.max_download_mb)")
                chunks.append(chunk)
    except _Expired:
        raise FetchError(f"no answer within {limits.deadline_s:g} s "
                         "(settings.fetch.deadline_s)")
    except _Refused as exc:
        raise FetchError(str(exc))
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FetchError(f"HTTP {exc.code} {exc.reason}", exc.code)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if deadline.passed():
            raise FetchError(f"no answer within {limits.deadline_s:g} s "
                             "(settings.fetch.deadline_s)")
        raise FetchError(f"cannot download it: {getattr(exc, 'reason', exc)}")
    except ValueError as exc:  # a bad port or host name
        raise FetchError(f"not a valid URL ({type(exc).__name__}: {exc})")


def _fetch(url: str, where: str, limits: FetchLimits, deadline: _Deadline) -> set[str]:
    with _opener(deadline).open(url, timeout=deadline.left()) as resp:
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limits.max_download_mb * MiB:
            raise _Refused(f"the server announces {int(length) / MiB:.0f} MiB, more than "
                           f"max_download_mb ({limits.max_download_mb:g} MiB); refusing it; "
                           f"{_hint('max_download_mb')}")
        stream = _Inflating(resp, limits, deadline)
        with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK,  # type: ignore
                          tarinfo=_CappedHeaders) as tar:
            return _members(tar, where, limits)


class _CappedHeaders(tarfile.TarInfo):
    """tarfile reads a PAX or GNU long-name header member whole into memory before any
    member is seen: one of more than ``MAX_HEADER`` bytes is refused unread."""

    MAX_HEADER = MiB
    HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in self.HEADERS and self.size > self.MAX_HEADER:
            raise _Refused(f"a tar header member of {self.size / MiB:.0f} MiB (more than "
                           f"{self.MAX_HEADER // MiB} MiB of names and attributes); refusing "
                           "it")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _url_names(url: str, where: str, limits: FetchLimits | None = None) -> set[str]:
    """Top-level file names of the compressed model a hosting-protocol URL serves, once
    the whole archive stream was checked (see the module's docstring)."""
    limits = limits or FetchLimits()
    try:
        parts = urllib.parse.urlparse(url)
        parts.port  # noqa: B018 (a bad port raises here, not in the middle of the fetch)
    except ValueError as exc:
        raise UserError(f"{where}: {url} is not a valid URL ({exc}); check it")
    query = (parts.query + "&" if parts.query else "") + "tf-hub-format=compressed"
    deadline = _Deadline(limits.deadline_s)
    try:
        with deadline:
            try:
                return _fetch(parts._replace(query=query).geturl(), where, limits, deadline)
            except (OSError, http.client.HTTPException, tarfile.TarError):
                if deadline.passed():
                    raise _Expired
                raise
    except _Expired:
        raise UserError(f"{where}: the download did not finish within its deadline "
                        f"({limits.deadline_s:g} s; {deadline.received} bytes received); "
                        "check the server, or raise deadline_s (settings.fetch.deadline_s, "
                        "or on its models: entry)")
    except _Refused as exc:
        raise UserError(f"{where}: {exc}")
    except urllib.error.HTTPError as exc:
        exc.close()
        raise UserError(f"{where}: {url} answered HTTP {exc.code} {exc.reason}; check the URL")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{where}: cannot download {url}: {reason}; check the URL and server")
    except tarfile.TarError as exc:
        raise UserError(f"{where}: {url} did not answer a tar.gz model archive ({exc}); "
                        "serve it with the TF Hub hosting protocol")
    except ValueError as exc:  # UnicodeError of a bad host name (idna), raised on connect
        raise UserError(f"{where}: {url} is not a valid URL ({type(exc).__name__}: {exc}); "
                        "check it")


def detect_format(handle: str, where: str, fetch: FetchLimits | None = None) -> str:
    names = _url_names(handle, where, fetch) if is_url(handle) else _dir_names(handle, where)
    fmt = format_of(names)
    if fmt is None:
        shown = ", ".join(sorted(names)[:6]) or "nothing"
        raise UserError(f"{where}: {handle} is not a SavedModel or TF1 Hub module (no "
                        f"saved_model.pb; found {shown}); point at the model's root directory")
    return fmt


def name_for(handle: str) -> str:
    """A model name from a handle: its last path component, made safe."""
    path = urllib.parse.urlparse(handle).path if is_url(handle) else handle
    parts = [p for p in path.rstrip("/").split("/") if p]
    if len(parts) >= 2 and parts[-1].isdigit():  # tfhub-style .../name/2
        parts = parts[:-2] + [parts[-2] + "-v" + parts[-1]]
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", parts[-1] if parts else "model").strip("-")
    return base or "model"


def user_model(handle: str, fmt: str = "auto", inputs: str | None = None,
               signature: str | None = None, name: str | None = None,
               where: str = "--model", base: str = ".",
               fetch: FetchLimits | None = None) -> dict:
    """The spec a user's model runs with (``kind: user``); checked here, not in the envs.

    A URL's archive is always fetched and checked (``fetch``: its caps and deadline), also
    when ``fmt`` is given: an archive refused here never reaches an env's TFHUB_CACHE_DIR.
    """
    if fmt not in CHOICES:
        raise UserError(f"{where}: unknown format {fmt!r} (known: {', '.join(CHOICES)})")
    if not is_url(handle):
        handle = os.path.abspath(os.path.join(base, handle))
    detected = detect_format(handle, where, fetch)
    if fmt != "auto" and detected != fmt:
        raise UserError(f"{where}: {handle} looks like {detected}, not {fmt}; drop "
                        "--model-format or fix it")
    if inputs is not None:
        inputs = os.path.abspath(os.path.join(base, inputs))
        if not os.path.isfile(inputs) or not inputs.endswith(".npz"):
            raise UserError(f"{where}: inputs {inputs} is not an .npz file; save the inputs "
                            "with numpy.savez(path, **{input_name: array})")
    name = name or name_for(handle)
    if not NAME.match(name):
        raise UserError(f"{where}: model name {name!r}: use letters, digits, '-' or '_'")
    return {"name": name, "kind": "user", "handle": handle, "format": detected,
            "inputs": inputs, "signature": signature}
