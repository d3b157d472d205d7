#!/usr/bin/env python3
"""Rehearse .github/workflows/nightly.yml on this machine: execute its own ``run:`` steps.

GitHub cannot be reached from our machines, so this reads the workflow and runs it as a
runner would, twice: night 1 publishes a site into a directory that a real ``http.server``
on 127.0.0.1 serves (the ``SITE_URL`` of both nights), night 2 takes night 1 from that site
as its baseline and history. Jobs run in ``needs`` order, matrix jobs one after another,
each in its own directory (``WORK/night-N/jobs/<job>-<i>/``: ``workspace/`` = the checkout,
``temp/`` = ``$RUNNER_TEMP``).

What is emulated, not run:
- ``${{ }}`` in ``env:``, ``with:``, ``if:``, ``outputs:``, ``strategy.matrix``, ``name:``
  and ``runs-on:`` (the contexts github, env, vars, inputs, matrix, needs, steps, runner,
  job, strategy; operators ! == != < <= > >= && || and the functions the workflow uses);
  a ``${{`` inside a ``run:`` script is refused, as the workflow's rules say;
- ``actions/checkout``: a clone of this checkout's HEAD with the working tree over it
  (tracked and untracked files, not ignored ones) and ``.envs`` linked to this
  checkout's (the TF installs are reused, as uv's cache keeps
  the wheels on GitHub); ``actions/setup-python``: skipped (pyenv's interpreters; its
  ``python-path`` output is the one pyenv has); ``astral-sh/setup-uv``, ``actions/cache``:
  skipped (this machine's uv and uv cache);
- ``actions/upload-artifact`` / ``download-artifact``: copies under ``WORK/night-N/
  artifacts/<name>/``; ``actions/upload-pages-artifact``: the site as the ``github-pages``
  artifact; ``actions/deploy-pages``: that artifact becomes what the server serves.

Usage: python .ci/rehearse.py [--matrix F] [--work DIR] [--nights 2] [--single]
(``nox -s rehearse -- ...``). Exit 0 when every night ran as on GitHub and night 2 shows
night 1 in its history and diffs against it; the step timings are in WORK/timings.json.
Needs only PyYAML (and bash, uv, the harness's dependencies for the steps themselves).
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import glob
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW = os.path.join(ROOT, ".github", "workflows", "nightly.yml")


class RehearsalError(Exception):
    """The workflow cannot be rehearsed, or a night did not do what it must: one line."""


# --------------------------------------------------------------------------- expressions

_TOKEN = re.compile(r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|'(?P<str>(?:[^']|'')*)'|"
                    r"(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\],.*])|"
                    r"(?P<name>[A-Za-z_][A-Za-z0-9_-]*))")


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise RehearsalError(f"expression {text!r}: cannot read it at {text[pos:]!r}")
        pos = m.end()
        if m.group("num") is not None:
            out.append(("lit", float(m.group("num")) if "." in m.group("num")
                        else int(m.group("num"))))
        elif m.group("str") is not None:
            out.append(("lit", m.group("str").replace("''", "'")))
        elif m.group("op"):
            out.append(("op", m.group("op")))
        else:
            name = m.group("name")
            lits = {"true": True, "false": False, "null": None}
            out.append(("lit", lits[name]) if name in lits else ("name", name))
    return out


def _truthy(value: Any) -> bool:
    return value not in (False, 0, "", None) and value == value


def _coerce(value: Any) -> Any:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return float(value) if value.strip() else 0
        except ValueError:
            return float("nan")
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a == b
    return _coerce(a) == _coerce(b)


def _format(fmt: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: _to_string(args[int(m.group(1))]),
                  fmt.replace("{{", "\0").replace("}}", "\1")).replace(
        "\0", "{").replace("\1", "}")


def _to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class Evaluator:
    """GitHub Actions expressions over ``contexts``; ``functions`` adds status checks and
    hashFiles."""

    def __init__(self, contexts: dict[str, Any], functions: dict[str, Callable] | None = None):
        self.contexts = contexts
        self.functions: dict[str, Callable] = {
            "fromjson": lambda s: json.loads(s),
            "tojson": lambda v: json.dumps(v, indent=2),
            "format": _format,
            "contains": lambda h, n: (any(_equal(x, n) for x in h) if isinstance(h, list)
                                      else _to_string(n).lower() in _to_string(h).lower()),
            "startswith": lambda s, p: _to_string(s).lower().startswith(_to_string(p).lower()),
            "endswith": lambda s, p: _to_string(s).lower().endswith(_to_string(p).lower()),
            "always": lambda: True, "cancelled": lambda: False,
        }
        self.functions.update({k.lower(): v for k, v in (functions or {}).items()})

    def eval(self, text: str) -> Any:
        self.toks, self.i, self.text = _tokens(text), 0, text
        value = self._or()
        if self.i != len(self.toks):
            raise RehearsalError(f"expression {text!r}: unexpected {self.toks[self.i][1]!r}")
        return value

    def _peek(self, value: str) -> bool:
        return self.i < len(self.toks) and self.toks[self.i] == ("op", value)

    def _take(self, value: str) -> None:
        if not self._peek(value):
            raise RehearsalError(f"expression {self.text!r}: expected {value!r}")
        self.i += 1

    def _or(self) -> Any:
        left = self._and()
        while self._peek("||"):
            self.i += 1
            right = self._and()
            left = left if _truthy(left) else right
        return left

    def _and(self) -> Any:
        left = self._cmp()
        while self._peek("&&"):
            self.i += 1
            right = self._cmp()
            left = right if _truthy(left) else left
        return left

    def _cmp(self) -> Any:
        left = self._unary()
        for op in ("==", "!=", "<=", ">=", "<", ">"):
            if self._peek(op):
                self.i += 1
                right = self._unary()
                if op in ("==", "!="):
                    return _equal(left, right) == (op == "==")
                a, b = _coerce(left), _coerce(right)
                return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return left

    def _unary(self) -> Any:
        if self._peek("!"):
            self.i += 1
            return not _truthy(self._unary())
        return self._postfix(self._primary())

    def _primary(self) -> Any:
        if self.i >= len(self.toks):
            raise RehearsalError(f"expression {self.text!r}: ends too early")
        kind, value = self.toks[self.i]
        self.i += 1
        if kind == "lit":
            return value
        if (kind, value) == ("op", "("):
            inner = self._or()
            self._take(")")
            return inner
        if kind == "name":
            if self._peek("("):
                self.i += 1
                args = []
                while not self._peek(")"):
                    args.append(self._or())
                    if not self._peek(")"):
                        self._take(",")
                self._take(")")
                fn = self.functions.get(value.lower())
                if fn is None:
                    raise RehearsalError(f"expression {self.text!r}: function {value}() is "
                                         "not emulated; add it to .ci/rehearse.py")
                return fn(*args)
            if value not in self.contexts:
                raise RehearsalError(f"expression {self.text!r}: context {value!r} is not "
                                     "emulated; add it to .ci/rehearse.py")
            return self.contexts[value]
        raise RehearsalError(f"expression {self.text!r}: unexpected {value!r}")

    def _postfix(self, value: Any) -> Any:
        while True:
            if self._peek("."):
                self.i += 1
                kind, name = self.toks[self.i]
                self.i += 1
                value = _member(value, name)
            elif self._peek("["):
                self.i += 1
                key = self._or()
                self._take("]")
                value = _member(value, key)
            else:
                return value


def _member(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        lowered = {str(k).lower(): v for k, v in value.items()}
        return lowered.get(str(key).lower())
    if isinstance(value, list) and isinstance(key, (int, float)):
        return value[int(key)] if 0 <= int(key) < len(value) else None
    return None


_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def interpolate(value: Any, ev: Evaluator) -> Any:
    """``${{ }}`` in a string (the whole string: the value itself, e.g. a mapping), in
    every string of a mapping or list."""
    if isinstance(value, dict):
        return {k: interpolate(v, ev) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, ev) for v in value]
    if not isinstance(value, str):
        return value
    whole = _EXPR.fullmatch(value.strip())
    if whole:
        return ev.eval(whole.group(1))
    return _EXPR.sub(lambda m: _to_string(ev.eval(m.group(1))), value)


def condition(text: Any, ev: Evaluator) -> bool:
    """An ``if:``: with or without ``${{ }}``; no status function means success() &&."""
    if isinstance(text, bool):
        return text
    text = str(text).strip()
    whole = _EXPR.fullmatch(text)
    if whole:
        text = whole.group(1).strip()
    if not re.search(r"\b(always|success|failure|cancelled)\s*\(", text):
        text = f"success() && ({text})"
    return _truthy(ev.eval(text))


# --------------------------------------------------------------------------- the site

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def site_server(pages: str) -> Iterator[str]:
    """A real static server on 127.0.0.1 for ``pages`` (a symlink deploy-pages swaps)."""
    os.makedirs(pages + ".d/empty", exist_ok=True)
    if not os.path.lexists(pages):
        os.symlink(pages + ".d/empty", pages)
    handler = functools.partial(_Quiet, directory=pages)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def deploy(pages: str, artifact: str, night: int) -> None:
    target = f"{pages}.d/night-{night}"
    shutil.copytree(artifact, target)
    tmp = f"{pages}.new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, pages)


# --------------------------------------------------------------------------- the runner

def _python_path(version: str) -> str:
    """What actions/setup-python's python-path output is here: pyenv's interpreter."""
    version = str(version).strip().splitlines()[-1].strip()
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin",
                                          f"python{version}")),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/versions/")[1]
                                                              .split("/")[0])])
    if found:
        return os.path.realpath(found[-1])
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory, f"python{version}")
        if "shims" not in directory and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    raise RehearsalError(f"actions/setup-python python-version {version}: no such interpreter "
                         f"here; pyenv install {version}")


def _tree_files() -> list[str]:
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]


def checkout(workspace: str) -> None:
    """A clone of this checkout's HEAD (a run records its commit) with the working tree's
    changes and untracked files copied over it."""
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", ROOT, workspace],
                   check=True)
    subprocess.run(["git", "-C", workspace, "checkout", "-q", "--detach", "HEAD"],
                   check=True)
    for rel in _tree_files():
        dest = os.path.join(workspace, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), dest)
    envs = os.path.join(ROOT, ".envs")
    if os.path.isdir(envs):
        os.symlink(os.path.realpath(envs), os.path.join(workspace, ".envs"))


def _copy_into(src: str, dest: str) -> None:
    if os.path.isdir(src):
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
    else:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        shutil.copy2(src, dest)


def upload(workspace: str, artifacts: str, name: str, paths: str, missing: str) -> int:
    """actions/upload-artifact: the files ``paths`` matches, relative to their least common
    ancestor (a directory path: its contents). Returns the number of files."""
    dest = os.path.join(artifacts, name)
    if os.path.exists(dest):
        raise RehearsalError(f"upload-artifact: an artifact named {name!r} exists already "
                             "(GitHub refuses it too); give each upload its own name")
    matched: list[str] = []
    excluded: list[str] = []
    for pattern in [p.strip() for p in paths.splitlines() if p.strip()]:
        into = excluded if pattern.startswith("!") else matched
        into += sorted(glob.glob(os.path.join(workspace, pattern.lstrip("!")),
                                 recursive=True))
    excluded = [os.path.normpath(e) for e in excluded]
    files: list[str] = []
    for m in matched:
        if os.path.isdir(m):
            files += [os.path.join(d, f) for d, _, names in os.walk(m) for f in names]
        else:
            files.append(m)
    files = [f for f in files if not any(f == e or f.startswith(e + os.sep)
                                         for e in excluded)]
    if not files:
        if missing == "error":
            raise RehearsalError(f"upload-artifact {name}: no files match {paths!r}")
        print(f"    warning: upload-artifact {name}: no files match {paths!r}")
        return 0
    base = os.path.commonpath([m if os.path.isdir(m) else os.path.dirname(m)
                               for m in matched])
    for f in files:
        _copy_into(f, os.path.join(dest, os.path.relpath(f, base)))
    return len(files)


def download(workspace: str, artifacts: str, with_: dict) -> list[str]:
    """actions/download-artifact: by name into ``path``, or every artifact ``pattern``
    matches (all without one) into ``path/<name>/`` (merge-multiple false)."""
    target = os.path.join(workspace, str(with_.get("path") or "."))
    names = sorted(os.listdir(artifacts)) if os.path.isdir(artifacts) else []
    if with_.get("name"):
        if with_["name"] not in names:
            raise RehearsalError(f"download-artifact: no artifact {with_['name']!r}")
        _copy_into(os.path.join(artifacts, with_["name"]), target)
        return [with_["name"]]
    chosen = [n for n in names if fnmatch.fnmatchcase(n, str(with_.get("pattern") or "*"))]
    merge = _to_string(with_.get("merge-multiple", False)).lower() == "true"
    for n in chosen:
        _copy_into(os.path.join(artifacts, n), target if merge else os.path.join(target, n))
    return chosen


def _hash_files(workspace: str, *patterns: str) -> str:
    digest = hashlib.sha256()
    found = False
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(workspace, pattern), recursive=True)):
            if os.path.isfile(path):
                found = True
                with open(path, "rb") as fh:
                    digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest() if found else ""


def _read_kv(path: str) -> dict[str, str]:
    """$GITHUB_OUTPUT / $GITHUB_ENV: ``k=v`` lines and ``k<<EOF`` blocks."""
    out: dict[str, str] = {}
    if not os.path.exists(path):
        return out
    with open(path) as fh:
        lines = fh.read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, marker = line.split("<<", 1)
            end = lines.index(marker, i + 1)
            out[key] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
        elif line.strip():
            raise RehearsalError(f"{path}: {line!r} is neither key=value nor key<<DELIMITER")
        i += 1
    return out


class Night:
    def __init__(self, workflow: dict, work: str, night: int, event: str, inputs: dict,
                 site_url: str, pages: str, timings: list[dict]):
        self.wf, self.night, self.event, self.inputs = workflow, night, event, inputs
        self.dir = os.path.join(work, f"night-{night}")
        self.artifacts = os.path.join(self.dir, "artifacts")
        self.site_url, self.pages, self.timings = site_url, pages, timings
        self.results: dict[str, dict] = {}
        self.github = {"event_name": event, "run_id": str(1000 + night), "run_attempt": "1",
                       "repository": "rehearsal/tfhub-compat", "repository_owner": "rehearsal",
                       "event": {"repository": {"name": "tfhub-compat"}, "inputs": inputs},
                       "ref": "refs/heads/main", "sha": "0" * 40, "workflow": "nightly"}
        self.vars = {"SITE_URL": site_url}

    def contexts(self, **extra: Any) -> dict[str, Any]:
        base = {"github": self.github, "vars": self.vars, "inputs": self.inputs,
                "secrets": {}, "env": {}, "runner": {"os": "Linux", "arch": "X64",
                                                     "temp": ""}}
        base.update(extra)
        return base

    def run(self) -> None:
        os.makedirs(self.artifacts, exist_ok=True)
        ev = Evaluator(self.contexts())
        self.env = {k: _to_string(v) for k, v in interpolate(self.wf.get("env") or {}, ev).items()}
        for job_id in _order(self.wf["jobs"]):
            self.run_job(job_id, self.wf["jobs"][job_id])

    def _needs(self, job: dict) -> list[str]:
        needs = job.get("needs") or []
        return [needs] if isinstance(needs, str) else list(needs)

    def run_job(self, job_id: str, job: dict) -> None:
        needs = {n: self.results[n] for n in self._needs(job)}
        status = {
            "success": lambda: all(r["result"] == "success" for r in needs.values()),
            "failure": lambda: any(r["result"] == "failure" for r in needs.values()),
        }
        ev = Evaluator(self.contexts(needs=needs, env=self.env), status)
        if not condition(job.get("if", "success()"), ev):
            print(f"{job_id}: skipped (if: {job.get('if', 'success()')})")
            self.results[job_id] = {"result": "skipped", "outputs": {}}
            return
        matrix = (job.get("strategy") or {}).get("matrix")
        combos: list[dict | None] = [None]
        if matrix is not None:
            combos = list(_combinations(interpolate(matrix, ev)))
            if not combos:
                raise RehearsalError(f"jobs.{job_id}.strategy.matrix is empty (GitHub fails "
                                     "such a run too); the plan must list a job")
        results, outputs = [], {}
        for i, combo in enumerate(combos):
            result, outs = self.run_instance(job_id, job, needs, combo, i)
            results.append(result)
            outputs.update({k: v for k, v in outs.items() if v != ""})
        result = "failure" if "failure" in results else "success"
        self.results[job_id] = {"result": result, "outputs": outputs}
        print(f"{job_id}: {result} ({len(combos)} job{'s' if len(combos) > 1 else ''})")

    def run_instance(self, job_id: str, job: dict, needs: dict, combo: dict | None,
                     index: int) -> tuple[str, dict]:
        jdir = os.path.join(self.dir, "jobs", f"{job_id}-{index}")
        workspace, temp = os.path.join(jdir, "workspace"), os.path.join(jdir, "temp")
        os.makedirs(workspace)  # git clone takes an empty directory
        os.makedirs(temp)
        files = {k: os.path.join(jdir, k.lower()) for k in ("GITHUB_PATH", "GITHUB_ENV",
                                                             "GITHUB_STEP_SUMMARY")}
        for path in files.values():
            open(path, "w").close()
        steps: dict[str, dict] = {}
        failed = False
        runner = {"os": "Linux", "arch": "X64", "temp": temp}
        matrix_ctx = combo or {}

        def make_ev(env: dict) -> Evaluator:
            return Evaluator(self.contexts(needs=needs, env=env, matrix=matrix_ctx,
                                           steps=steps, runner=runner,
                                           strategy={"job-index": index},
                                           job={"status": "failure" if failed else "success"}),
                             {"success": lambda: not failed, "failure": lambda: failed,
                              "hashFiles": lambda *p: _hash_files(workspace, *p)})

        env = dict(self.env)
        env.update({k: _to_string(v) for k, v in
                    interpolate(job.get("env") or {}, make_ev(env)).items()})
        title = interpolate(job.get("name", job_id), make_ev(env))
        runs_on = interpolate(job.get("runs-on", ""), make_ev(env))
        print(f"{job_id}[{index}] {title} (runs-on {runs_on}) in {jdir}")
        extra_env = {"GITHUB_WORKSPACE": workspace, "RUNNER_TEMP": temp, "CI": "true",
                     "GITHUB_ACTIONS": "true", "RUNNER_OS": "Linux",
                     "GITHUB_RUN_ID": self.github["run_id"], "GITHUB_RUN_ATTEMPT": "1",
                     "GITHUB_EVENT_NAME": self.event, "GITHUB_JOB": job_id,
                     "GITHUB_REPOSITORY": self.github["repository"], **files}
        path_prefix: list[str] = []
        for n, step in enumerate(job.get("steps") or []):
            sid = step.get("id") or f"__step{n}"
            name = step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0]
            ev = make_ev(env)
            if not condition(step.get("if", "success()"), ev):
                steps[sid] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                print(f"  - {name}: skipped")
                continue
            step_env = dict(env)
            step_env.update({k: _to_string(v) for k, v in
                             interpolate(step.get("env") or {}, ev).items()})
            with_ = interpolate(step.get("with") or {}, make_ev(step_env))
            started = time.monotonic()
            outputs: dict[str, str] = {}
            if "uses" in step:
                outputs, ok = self.uses(step["uses"], with_, workspace, runner), True
            else:
                ok, outputs = self.run_script(step, job_id, n, workspace, jdir, step_env,
                                              extra_env, path_prefix)
            seconds = time.monotonic() - started
            steps[sid] = {"outputs": outputs, "outcome": "success" if ok else "failure",
                          "conclusion": "success" if ok else "failure"}
            if not ok and not step.get("continue-on-error"):
                failed = True
            self.timings.append({"night": self.night, "job": job_id, "index": index,
                                 "title": title, "step": name, "seconds": round(seconds, 2),
                                 "ok": ok})
            print(f"  - {name}: {'ok' if ok else 'FAILED'} ({seconds:.1f}s)")
            env.update(_read_kv(files["GITHUB_ENV"]))
            with open(files["GITHUB_PATH"]) as fh:
                path_prefix[:0] = [p for p in reversed(fh.read().splitlines()) if p
                                   and p not in path_prefix]
            open(files["GITHUB_PATH"], "w").close()
        outputs = {k: _to_string(v) for k, v in
                   interpolate(job.get("outputs") or {}, make_ev(env)).items()}
        return ("failure" if failed else "success"), outputs

    def run_script(self, step: dict, job_id: str, n: int, workspace: str, jdir: str,
                   step_env: dict, extra_env: dict, path_prefix: list[str]
                   ) -> tuple[bool, dict]:
        script = step["run"]
        if "${{" in script:
            raise RehearsalError(f"jobs.{job_id}.steps[{n}].run holds '${{{{': pass the "
                                 "value through env: (the workflow's rule)")
        output = os.path.join(jdir, f"output.{n}")
        open(output, "w").close()
        # a runner's environment: no virtualenv or PYTHONPATH of whoever started this
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(step_env)
        env.update(extra_env)
        env["GITHUB_OUTPUT"] = output
        env["PATH"] = os.pathsep.join(path_prefix + [os.environ.get("PATH", "")])
        cwd = os.path.join(workspace, step.get("working-directory", ""))
        shell = step.get("shell", "bash")
        if shell != "bash":
            raise RehearsalError(f"jobs.{job_id}.steps[{n}]: shell {shell!r} is not emulated")
        script_path = os.path.join(jdir, f"step.{n}.sh")
        with open(script_path, "w") as fh:
            fh.write(script)
        sys.stdout.flush()
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail",
                               script_path], cwd=cwd, env=env)
        return proc.returncode == 0, _read_kv(output)

    def uses(self, uses: str, with_: dict, workspace: str, runner: dict) -> dict:
        action = uses.split("@", 1)[0]
        if action == "actions/checkout":
            checkout(workspace)
            return {}
        if action == "actions/setup-python":
            return {"python-path": _python_path(with_.get("python-version", "3"))}
        if action in ("astral-sh/setup-uv", "actions/cache"):
            return {}
        if action == "actions/upload-artifact":
            upload(workspace, self.artifacts, str(with_.get("name", "artifact")),
                   str(with_["path"]), str(with_.get("if-no-files-found", "warn")))
            return {}
        if action == "actions/download-artifact":
            got = download(workspace, self.artifacts, with_)
            print(f"    downloaded {len(got)} artifacts: {' '.join(got)}")
            return {"download-path": os.path.join(workspace, str(with_.get("path") or "."))}
        if action == "actions/upload-pages-artifact":
            upload(workspace, self.artifacts, str(with_.get("name", "github-pages")),
                   str(with_.get("path", "_site/")), "error")
            return {}
        if action == "actions/deploy-pages":
            artifact = os.path.join(self.artifacts, str(with_.get("artifact_name",
                                                                  "github-pages")))
            if not os.path.isdir(artifact):
                raise RehearsalError("deploy-pages: no github-pages artifact was uploaded")
            deploy(self.pages, artifact, self.night)
            return {"page_url": self.site_url}
        raise RehearsalError(f"uses: {uses}: not emulated; add it to .ci/rehearse.py")


def _order(jobs: dict) -> list[str]:
    done: list[str] = []

    def visit(job_id: str, trail: tuple[str, ...]) -> None:
        if job_id in done:
            return
        if job_id in trail:
            raise RehearsalError(f"jobs.{job_id}: needs form a cycle ({' -> '.join(trail)})")
        if job_id not in jobs:
            raise RehearsalError(f"needs: {job_id!r} is no job of the workflow")
        needs = jobs[job_id].get("needs") or []
        for need in [needs] if isinstance(needs, str) else needs:
            visit(need, trail + (job_id,))
        done.append(job_id)
    for job_id in jobs:
        visit(job_id, ())
    return done


def _combinations(matrix: Any) -> Iterator[dict]:
    if not isinstance(matrix, dict):
        raise RehearsalError(f"strategy.matrix is {type(matrix).__name__}, not a mapping")
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    combos: list[dict] = [{}]
    for key, values in axes.items():
        combos = [dict(c, **{key: v}) for c in combos for v in values]
    if not axes:
        combos = []
    yield from combos
    yield from matrix.get("include") or []


def load_workflow(path: str) -> dict:
    with open(path) as fh:
        wf = yaml.safe_load(fh)
    if True in wf:  # YAML 1.1 reads the key `on` as true
        wf["on"] = wf.pop(True)
    return wf


# --------------------------------------------------------------------------- the checks

def _fetch_json(url: str) -> Any:
    from urllib.request import urlopen
    with urlopen(url, timeout=30) as resp:
        return json.load(resp)


def _run_dir(night_dir: str) -> str:
    found = glob.glob(os.path.join(night_dir, "jobs", "merge-0", "workspace", "run"))
    if not found:
        raise RehearsalError(f"{night_dir}: the merge job wrote no run/ directory")
    return found[0]


def check_nights(work: str, site_url: str, nights: int, results: list[dict]) -> list[str]:
    """What the nights must show; returns the run ids, oldest first."""
    run_ids = []
    for n in range(1, nights + 1):
        jobs = results[n - 1]
        for job_id in ("plan", "create", "consume", "merge", "deploy"):
            if jobs.get(job_id, {}).get("result") != "success":
                raise RehearsalError(f"night {n}: job {job_id} "
                                     f"{jobs.get(job_id, {}).get('result', 'did not run')}; "
                                     f"its log is above, its files in {work}/night-{n}/jobs")
        with open(os.path.join(_run_dir(os.path.join(work, f"night-{n}")), "summary.json")) as fh:
            run_ids.append(json.load(fh)["run"]["run_id"])
    index = _fetch_json(site_url + "runs/index.json")
    listed = [r.get("run_id") for r in index.get("runs", [])]
    if listed[:nights] != run_ids[::-1]:
        raise RehearsalError(f"{site_url}runs/index.json lists {listed}, not the nights "
                             f"{run_ids[::-1]} newest first")
    if nights >= 2:
        run = _run_dir(os.path.join(work, f"night-{nights}"))
        with open(os.path.join(run, "summary.json")) as fh:
            summary = json.load(fh)
        baseline = ((summary.get("changes") or {}).get("baseline") or {}).get("run_id")
        if baseline != run_ids[-2]:
            raise RehearsalError(f"night {nights}: summary.json changes.baseline.run_id is "
                                 f"{baseline!r}, not night {nights - 1}'s {run_ids[-2]!r}")
        history = json.dumps(summary.get("history"))
        if run_ids[-2] not in history:
            raise RehearsalError(f"night {nights}: summary.json history does not list night "
                                 f"{nights - 1}'s run {run_ids[-2]}")
        for name in ("compat.md", "index.html"):
            with open(os.path.join(run, name)) as fh:
                if run_ids[-2] not in fh.read():
                    raise RehearsalError(f"night {nights}: {name} does not name night "
                                         f"{nights - 1}'s run {run_ids[-2]}")
        from urllib.request import urlopen
        with urlopen(site_url, timeout=30) as resp:
            front = resp.read().decode()
        if run_ids[-1] not in front:
            raise RehearsalError(f"{site_url}: the front page is not night {nights}'s run "
                                 f"{run_ids[-1]}")
    return run_ids


def single_process(work: str, matrix: str) -> float:
    """``harness run`` of the same matrix in one process, for the timings."""
    where = os.path.join(work, "single")
    os.makedirs(where, exist_ok=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "harness", "run", "--matrix", matrix, "--run-id",
                    "rehearsal-single"], cwd=ROOT, check=False,
                   env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"})
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=".ci/rehearse.py", description=__doc__.splitlines()[0])
    p.add_argument("--workflow", default=WORKFLOW)
    p.add_argument("--matrix", help="the workflow_dispatch input (default: the input's "
                                    "default; with --event schedule: none)")
    p.add_argument("--event", default="workflow_dispatch",
                   choices=("workflow_dispatch", "schedule"))
    p.add_argument("--work", default=os.path.join(ROOT, "reports", "rehearsal"),
                   help="where the nights run (emptied first)")
    p.add_argument("--nights", type=int, default=2)
    p.add_argument("--single", action="store_true",
                   help="also time one `harness run` of the same matrix")
    args = p.parse_args(argv)
    try:
        wf = load_workflow(args.workflow)
        inputs: dict[str, Any] = {}
        if args.event == "workflow_dispatch":
            declared = ((wf.get("on") or {}).get("workflow_dispatch") or {}).get("inputs") or {}
            inputs = {k: v.get("default", "") for k, v in declared.items()}
            if args.matrix:
                if "matrix" not in declared:
                    raise RehearsalError("--matrix: the workflow has no matrix input")
                inputs["matrix"] = os.path.abspath(args.matrix)
        work = os.path.abspath(args.work)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        timings: list[dict] = []
        results = []
        pages = os.path.join(work, "pages")
        with site_server(pages) as site_url:
            print(f"site: {site_url} (serving {pages})")
            for night in range(1, args.nights + 1):
                started = time.monotonic()
                print(f"== night {night}")
                nt = Night(wf, work, night, args.event, inputs, site_url, pages, timings)
                nt.run()
                results.append(nt.results)
                print(f"== night {night}: {time.monotonic() - started:.1f}s")
            run_ids = check_nights(work, site_url, args.nights, results)
        single = single_process(work, inputs.get("matrix") or "matrix.yaml") \
            if args.single else None
        summary = {"run_ids": run_ids, "single_process_s": single, "steps": timings}
        with open(os.path.join(work, "timings.json"), "w") as fh:
            json.dump(summary, fh, indent=2)
        print_timings(timings, single)
        print(f"rehearsal ok: nights {', '.join(run_ids)}; night {args.nights} diffs against "
              f"and lists night {args.nights - 1} (timings: {work}/timings.json)"
              if args.nights >= 2 else f"rehearsal ok: {run_ids}")
        return 0
    except RehearsalError as exc:
        print(f"rehearsal failed: {exc}", file=sys.stderr)
        return 1


def print_timings(timings: list[dict], single: float | None) -> None:
    per_job: dict[tuple[int, str], float] = {}
    for t in timings:
        key = (t["night"], t["title"])
        per_job[key] = per_job.get(key, 0.0) + t["seconds"]
    print("\nstep timings (s):")
    for t in timings:
        if t["seconds"] >= 0.5:
            print(f"  night {t['night']}  {t['title']:<28} {t['step'][:60]:<60} "
                  f"{t['seconds']:8.1f}")
    print("job totals (s):")
    for (night, title), seconds in per_job.items():
        print(f"  night {night}  {title:<28} {seconds:8.1f}")
    for night in sorted({n for n, _ in per_job}):
        total = sum(s for (n, _), s in per_job.items() if n == night)
        print(f"night {night}: {total:.1f}s of jobs, one after another")
    if single is not None:
        print(f"single process (harness run): {single:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
