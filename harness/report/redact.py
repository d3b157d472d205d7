"""What a published report may show: no absolute host path, no private value.

Every file a run publishes (``results.jsonl``, ``summary.json``, ``compat.md``,
``index.html``) is built from records and metadata that went through one ``Redactor``
(``write_reports`` builds it with ``for_run``).  It rewrites every string:

- the run's known roots to labels: the run directory ``<run>`` (so the store is
  ``<run>/store/tf115/tf1/...``), the reports directory ``<reports>``, an env's install
  ``<env:ID>`` (its site-packages ``<env:ID>/site-packages/...``), the envs directory
  ``<envs>``, the interpreters' prefixes ``<python>`` (``<python>/lib/python3.11/...``),
  the harness's own environment ``<host-env>``, the pyenv root ``<pyenv>``, the project
  ``<project>`` (a matrix elsewhere: its directory ``<matrix-dir>``), the temporary
  directory ``<tmp>``, the home directory ``~``;
- then, as a fallback for paths of other machines or unknown installs: any
  ``.../lib/pythonX.Y/site-packages`` to ``<env>/site-packages``, any other
  ``.../lib/pythonX.Y`` to ``<python>/lib/pythonX.Y``, ``/tmp`` and ``/var/tmp`` to
  ``<tmp>``, ``/root`` and ``/home/USER`` to ``~``;
- the hub server's ``http://127.0.0.1:PORT`` to ``<hub>``;
- the values of env vars the matrix does not publish (``settings.publish.env_vars``,
  values of 4 characters or more) and, unless ``settings.publish.host``, the host name
  (the run's, from run.json, and this machine's), to ``<hidden>``: as whole words, in
  free text only (messages, tracebacks, details, metadata values; never keys, ids, names).

Records under ``records/`` are never rewritten: they stay the full local evidence.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
import tempfile
from typing import Any, Iterable

HIDDEN = "<hidden>"
HUB = "<hub>"
_SEGMENT = r"(?:/[\w.+@%~-]+)"
_START = r"(?=/)(?<![\w.~-])"  # a path starts here (not in a word or a path); "/" first: fast
_END = r"(?![\w.+@%~-])"  # and its root ends at a "/" or the end of the path
# after the known roots: any install's site-packages and standard library (then the
# broad roots: pyenv, temporary, home), then any temporary or home directory
_INSTALLS = (
    (_SEGMENT + r"+?/lib/python\d+(?:\.\d+)?/(?:site|dist)-packages" + _END,
     lambda path: "<env>/site-packages"),
    (_SEGMENT + r"+?/lib/python\d+(?:\.\d+)?" + _END,
     lambda path: "<python>/lib/" + path.rsplit("/", 1)[1]),
)
_FALLBACKS = (
    (r"/(?:private/)?(?:var/)?tmp" + _END, lambda path: "<tmp>"),
    (r"/root" + _END + r"|/home/[\w.@-]+" + _END, lambda path: "~"),
)
# the fields of a record that are free text (the rest are ids, names and versions)
FREE_TEXT = ("message", "traceback", "details", "repro")
MIN_SECRET = 4  # shorter values (``"1"``) would hide every such character of the report


class Redactor:
    """Rewrites strings (``text``) and whole JSON-like values (``tree``).

    ``roots``: (absolute path, label), the longest first; ``broad``: the same for roots
    that come after any install's site-packages and standard library (pyenv, home,
    temporary directory: ``~/.pyenv/versions/3.11.9/lib/python3.11/os.py`` is
    ``<python>/lib/python3.11/os.py``);
    ``envs``: install location -> the env ids that use it (envs that differ only in env
    vars share one: a record's own env id is preferred); ``hub_urls``: the hub server's
    ``http://host:port``; ``secrets``: values to hide; ``hosts``: host names to hide.
    """

    def __init__(self, roots: Iterable[tuple[str, str]] = (),
                 envs: dict[str, list[str]] | None = None, hub_urls: Iterable[str] = (),
                 secrets: Iterable[str] = (), hosts: Iterable[str] = (),
                 broad: Iterable[tuple[str, str]] = ()) -> None:
        labels: dict[str, Any] = {}
        for path, label in roots:
            for variant in _variants(path):
                labels.setdefault(variant, label)
        for location, ids in (envs or {}).items():
            for variant in _variants(location):
                labels[variant] = list(ids)  # an env install: labelled per record
        wide: dict[str, Any] = {}
        for path, label in broad:
            for variant in _variants(path):
                if variant not in labels:
                    wide.setdefault(variant, label)
        branches = _branches(labels) + list(_INSTALLS) + _branches(wide) + list(_FALLBACKS)
        self._labels = [label for _, label in branches]
        self._paths = re.compile(_START + "(?:" + "|".join(
            f"({pattern})" for pattern, _ in branches) + ")")
        hubs = sorted({u.rstrip("/") for u in hub_urls if u and re.search(r":\d+$", u)},
                      key=len, reverse=True)
        # the URL, else the bare host:port (a message without the scheme); never a prefix
        # of another port
        self._hubs = [(u.split("://", 1)[-1], re.compile(
            r"(?:https?://)?" + re.escape(u.split("://", 1)[-1]) + r"(?!\d)")) for u in hubs]
        # a private value or the host name: whole words only (never inside another word)
        self._private = [(s, re.compile(r"(?<!\w)" + re.escape(s) + r"(?!\w)")) for s in sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)]
        self._private += [(h, re.compile(r"(?<![\w.-])" + re.escape(h) + r"(?![\w-]|\.\w)"))
                          for h in sorted(set(hosts), key=len, reverse=True)
                          if h and h not in ("localhost", HIDDEN)]

    def text(self, value: str, env_id: str | None = None, private: bool = True) -> str:
        """``value`` with every private part replaced (``env_id``: whose record it is).
        ``private=False``: paths and the hub server only — for names (keys, ids, versions)
        that a private value must never garble (a host named ``gpu``, a value ``True``)."""
        for address, pattern in self._hubs:
            if address in value:
                value = pattern.sub(HUB, value)
        for literal, pattern in self._private if private else ():
            if literal in value:
                value = pattern.sub(HIDDEN, value)
        if "/" not in value:
            return value
        return self._paths.sub(lambda m: self._label(m, env_id), value)

    def _label(self, match: re.Match, env_id: str | None) -> str:
        label = self._labels[(match.lastindex or 1) - 1]
        if callable(label):
            return label(match.group(0))
        if isinstance(label, tuple):  # an env install's site-packages
            return _env_label(label[1], env_id) + "/site-packages"
        if isinstance(label, list):
            return _env_label(label, env_id)
        return label

    def tree(self, value: Any, env_id: str | None = None) -> Any:
        """A copy of a JSON-like ``value`` with every string rewritten (keys: their paths
        only)."""
        if isinstance(value, str):
            return self.text(value, env_id)
        if isinstance(value, dict):
            return {self.text(k, env_id, private=False) if isinstance(k, str) else k:
                    self.tree(v, env_id) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.tree(v, env_id) for v in value]
        return value

    def record(self, rec: dict[str, Any]) -> dict[str, Any]:
        """A result record as it is published: private values are hidden in its free text
        (``FREE_TEXT``) only, never in its ids and names; its repro command runs from the
        project's root, so a path inside the project is shown relative to it (runnable)."""
        env_id = rec.get("env_id")
        out = {k: self.tree(v, env_id) if k in FREE_TEXT else
               self.text(v, env_id, private=False) if isinstance(v, str) else v
               for k, v in rec.items()}
        if isinstance(out.get("repro"), str):
            out["repro"] = out["repro"].replace("<project>/", "")
        return out


def _branches(labels: dict[str, Any]) -> list[tuple[str, Any]]:
    """(pattern, label) per root, the longest first; an env install's site-packages
    first of all."""
    out: list[tuple[str, Any]] = []
    for path in sorted(labels, key=len, reverse=True):
        label = labels[path]
        if isinstance(label, list):
            out.append((re.escape(path) + r"/lib/python\d+(?:\.\d+)?/site-packages" + _END,
                        ("site-packages", label)))
        out.append((re.escape(path) + _END, label))
    return out


def _env_label(ids: list[str], env_id: str | None) -> str:
    return f"<env:{env_id if env_id in ids else ids[0]}>"


def _variants(path: str) -> list[str]:
    """``path`` as given, absolute and with symlinks resolved (a root shows up in every
    spelling), without a trailing slash; nothing for "" or "/"."""
    out: list[str] = []
    if not path:
        return out
    for p in (path, os.path.abspath(path), os.path.realpath(path)):
        p = p.rstrip("/")
        if p and os.path.isabs(p) and p not in out:
            out.append(p)
    return out


def _plans(run_dir: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted(glob.glob(os.path.join(run_dir, "plans", "*.json"))):
        try:
            with open(path) as fh:
                plan = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(plan, dict):
            out.append(plan)
    return out


def _venv_base(location: str) -> str | None:
    """The prefix of the interpreter a virtual environment was made from (pyvenv.cfg's
    ``home`` is its ``bin``)."""
    try:
        with open(os.path.join(location, "pyvenv.cfg")) as fh:
            for line in fh:
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    return os.path.dirname(value.strip().rstrip("/"))
    except OSError:
        pass
    return None


def for_run(run_dir: str, reports_dir: str, matrix: Any, envs: dict[str, Any],
            hosts: Iterable[str] = ()) -> Redactor:
    """The redactor of one run's published files: the roots it knows from the run
    directory (and where its plans say it was: a run directory that moved), the matrix
    (its directory, envs and reports directories, each env's install), the env metadata
    (``location``), the interpreters, the home and temporary directories; the hub server's
    URL from the plans; the env var values and the host name the matrix does not publish."""
    from ..backends.venv import VenvBackend
    from ..interpreters import find_interpreter, pyenv_root
    from ..wheel import PROJECT_ROOT
    settings = matrix.settings
    publish = settings.publish
    plans = _plans(run_dir)
    roots: list[tuple[str, str]] = [(run_dir, "<run>")]
    for plan in plans:  # where the run was written (harness report of a copied run)
        for key in ("store", "results_dir"):
            if isinstance(plan.get(key), str):
                roots.append((os.path.dirname(plan[key]), "<run>"))
    roots += [(reports_dir, "<reports>"), (settings.reports_dir, "<reports>"),
              (settings.envs_dir, "<envs>"), (PROJECT_ROOT, "<project>")]
    where = os.path.dirname(os.path.abspath(matrix.path))
    if os.path.commonpath([where, os.path.abspath(PROJECT_ROOT)]) != \
            os.path.abspath(PROJECT_ROOT):  # a matrix outside the project
        roots.append((where, "<matrix-dir>"))
    locations: dict[str, list[str]] = {}
    known = {e.id: e for e in matrix.envs}
    backend = VenvBackend(settings.envs_dir, "", "")
    for env_id in list(known) + [e for e in envs if e not in known]:
        where = (envs.get(env_id) or {}).get("location")
        if isinstance(where, str) and where.startswith("<envs>/"):
            where = os.path.join(settings.envs_dir, where[len("<envs>/"):])
        if not (isinstance(where, str) and os.path.isabs(where)) and env_id in known \
                and known[env_id].backend == "venv":
            where = backend.location(known[env_id])
        if isinstance(where, str) and os.path.isabs(where):
            locations.setdefault(where, []).append(env_id)
    pythons = {sys.prefix: "<host-env>"} if sys.prefix != sys.base_prefix else {}
    pythons.update({p: "<python>" for p in (sys.base_prefix, sys.base_exec_prefix)})
    for location in locations:
        base = _venv_base(location)
        if base:
            pythons.setdefault(base, "<python>")
    for version in sorted({e.python for e in matrix.envs}):
        found = find_interpreter(version)
        if found:
            pythons.setdefault(os.path.dirname(os.path.dirname(found)), "<python>")
    roots += sorted(pythons.items())
    broad = [(pyenv_root() or "", "<pyenv>"), (tempfile.gettempdir(), "<tmp>"),
             (os.path.expanduser("~"), "~")]
    from .completeness import read_run_file
    meta = read_run_file(run_dir) or {}  # every hub server the run had (resumed: several)
    hubs = [p["hub_url"] for p in plans if isinstance(p.get("hub_url"), str)]
    hubs += [u for u in meta.get("hub_urls") or () if isinstance(u, str)]
    if isinstance(meta.get("host"), str):  # where it ran (a report rebuilt elsewhere)
        hosts = [*hosts, meta["host"]]
    public = set(publish.env_vars)
    secrets = {str(v) for e in matrix.envs for k, v in e.env_vars if k not in public}
    secrets |= {str(v) for info in envs.values() if isinstance(info, dict)
                for k, v in (info.get("env_vars") or {}).items()
                if k not in public and v != HIDDEN}
    return Redactor(roots, locations, hubs, secrets, () if publish.host else hosts, broad)


def published_run(run: dict[str, Any], publish: Any, project: str) -> dict[str, Any]:
    """Run metadata as published: the host name only when ``publish.host``, the matrix
    relative to ``project`` (else its name)."""
    out = dict(run)
    if not publish.host and out.get("host"):
        out["host"] = HIDDEN
    matrix = out.get("matrix")
    if isinstance(matrix, str) and os.path.isabs(matrix):
        rel = os.path.relpath(matrix, project)
        out["matrix"] = rel if not rel.startswith("..") else os.path.basename(matrix)
    return out


def published_envs(envs: dict[str, Any], publish: Any, envs_dir: str) -> dict[str, Any]:
    """Env metadata as published: every env var's name, its value only when
    ``publish.env_vars`` names it; an install's location relative to the envs directory."""
    public = set(publish.env_vars)
    out = {}
    for env_id, info in envs.items():
        info = dict(info or {})
        if isinstance(info.get("env_vars"), dict):
            info["env_vars"] = {k: (v if k in public else HIDDEN)
                                for k, v in info["env_vars"].items()}
        where = info.get("location")
        if isinstance(where, str) and os.path.isabs(where):
            rel = os.path.relpath(where, envs_dir)
            info["location"] = ("<envs>/" + rel if not rel.startswith("..")
                                else os.path.basename(where))
        out[env_id] = info
    return out


def host_paths(text: str, roots: Iterable[str]) -> list[str]:
    """The ``roots`` (absolute directories, in any spelling) that ``text`` names: what a
    published file must not hold."""
    found = []
    for root in roots:
        for variant in _variants(root):
            if variant in text and any(
                    not _AFTER_PLACEHOLDER.search(text, max(0, m.start() - 64), m.start())
                    for m in re.finditer(_START + re.escape(variant) + _END, text)):
                found.append(variant)
                break
    return found


# a path right after a placeholder is inside it (``<run>/tmp/...``: the run's tmp/, not
# the host's /tmp), also as HTML (``&lt;run&gt;``) or in a page's JSON (``\u003crun\u003e``)
_AFTER_PLACEHOLDER = re.compile(
    r"(?:<|&lt;|\\u003c)(?:run|envs|env:[\w.-]+|env|python|project|reports|tmp|host-env|"
    r"matrix-dir|pyenv|hub)(?:>|&gt;|\\u003e)\Z")
