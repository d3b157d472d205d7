"""The ``venv`` backend: uv virtual environments from the machine's interpreters.

One install per (python, packages): reused while its pins are unchanged
(a marker file records them), verified after every provisioning against every
requirement asked for, and given the harness wheel (``--no-deps``) so the
``pytest11`` plugin is registered inside it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..config import Env
from ..expand import install_key
from ..interpreters import InterpreterError, not_installed, resolve_interpreter
from ..jsonio import write_json
from . import Provisioned, ProvisionError

MARKER = ".tfhub-compat.json"
RUNTIME_PACKAGES = ("pytest", "pytest-xdist")
TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel")
_DUMP = (
    "import json, sys\n"
    "try:\n    from importlib import metadata\n"
    "except ImportError:\n    import importlib_metadata as metadata\n"
    "d = {}\n"
    "for dist in metadata.distributions():\n"
    "    d[dist.metadata['Name']] = dist.version\n"
    "d['python'] = '%d.%d.%d' % sys.version_info[:3]\n"
    "print(json.dumps(d))\n"
)


def uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.pop("VIRTUAL_ENV", None)
    return env


def _run(argv: list[str], what: str, timeout: int = 1800) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=uv_env(),
                              timeout=timeout)
    except FileNotFoundError as exc:
        raise ProvisionError(f"{what}: {exc.filename} not found (pip install uv)")
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"{what}: timed out after {timeout}s")
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise ProvisionError(f"{what} failed: " + " | ".join(tail[-6:]))
    return proc.stdout


def requirements_for(env: Env) -> list[str]:
    named = {canonicalize_name(Requirement(p).name) for p in env.packages}
    return list(env.packages) + [p for p in RUNTIME_PACKAGES if canonicalize_name(p) not in named]


def verify(packages: list[str], versions: dict[str, str]) -> None:
    """Every requirement asked for is satisfied by what is installed, or ProvisionError."""
    installed: dict[str, str] = {canonicalize_name(k): v for k, v in versions.items()}
    problems = []
    for text in packages:
        req = Requirement(text)
        have = installed.get(canonicalize_name(req.name))
        if have is None:
            problems.append(f"{text} asked, not installed")
            continue
        try:
            ok = req.specifier.contains(Version(have), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{text} asked, {have} installed")
    tf_dists = {name: installed[name] for name in TF_DISTRIBUTIONS if name in installed}
    if len(set(tf_dists.values())) > 1:
        found = ", ".join(f"{k} {v}" for k, v in sorted(tf_dists.items()))
        problems.append(f"several TensorFlow distributions installed ({found}): a dependency "
                        "pulled in another TF; pin it (e.g. tf-keras to TF's minor version)")
    if problems:
        raise ProvisionError("installed versions differ from the pins: " + "; ".join(problems))


class VenvBackend:
    name = "venv"

    def __init__(self, envs_dir: str, wheel: str, wheel_id: str, log=print,
                 python_downloads: str = "never") -> None:
        self.envs_dir = envs_dir
        self.python_downloads = python_downloads  # settings.python_downloads
        self.wheel = wheel
        self.wheel_id = wheel_id
        self.log = log

    def location(self, env: Env) -> str:
        return os.path.join(self.envs_dir, f"py{env.python}-{install_key(env)}")

    def provision(self, env: Env) -> Provisioned:
        started = time.monotonic()
        try:
            interpreter = resolve_interpreter(env.python, self.python_downloads)
        except InterpreterError as exc:
            raise ProvisionError(str(exc))
        if interpreter is None:
            raise ProvisionError(not_installed(env.python))
        where = self.location(env)
        python = os.path.join(where, "bin", "python")
        marker_path = os.path.join(where, MARKER)
        key = install_key(env)
        marker = _read_json(marker_path)
        packages = requirements_for(env)
        created = not (marker.get("key") == key and os.path.exists(python))
        if created:
            self.log(f"  provisioning {env.id}: Python {env.python} + {' '.join(packages)}")
            shutil.rmtree(where, ignore_errors=True)
            os.makedirs(self.envs_dir, exist_ok=True)
            _run(["uv", "venv", "--quiet", "--python", interpreter, where], f"uv venv {where}")
            _run(["uv", "pip", "install", "--quiet", "--python", python, *packages],
                 f"uv pip install into {env.id}")
            marker = {"key": key, "python": env.python, "packages": packages}
        versions = json.loads(_run([python, "-c", _DUMP], f"listing packages of {env.id}"))
        verify(packages, versions)
        if marker.get("harness_wheel") != self.wheel_id:
            _run(["uv", "pip", "install", "--quiet", "--no-deps", "--reinstall", "--python",
                  python, self.wheel], f"installing the harness into {env.id}")
            marker["harness_wheel"] = self.wheel_id
        marker["versions"] = versions
        write_json(marker_path, marker, indent=2, sort_keys=True)
        return Provisioned(env.id, python, where, created, time.monotonic() - started,
                           {canonicalize_name(k): v for k, v in versions.items()})


def _read_json(path: str) -> dict:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}
