"""Find the machine's Python interpreters (pyenv first); never download one."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from functools import lru_cache


@lru_cache(maxsize=1)
def pyenv_root() -> str | None:
    root = os.environ.get("PYENV_ROOT")
    if root and os.path.isdir(root):
        return root
    if shutil.which("pyenv"):
        try:
            out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and os.path.isdir(out.stdout.strip()):
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    home = os.path.expanduser("~/.pyenv")
    return home if os.path.isdir(home) else None


def _version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/versions/(\d+)\.(\d+)\.(\d+)/", path)
    return tuple(int(x) for x in m.groups()) if m else (0,)


@lru_cache(maxsize=None)
def find_interpreter(version: str) -> str | None:
    """Real path of a CPython ``X.Y`` interpreter, or None.

    pyenv's ``versions/X.Y.*`` (newest patch) first, then ``pythonX.Y`` on PATH
    that is not a pyenv shim.
    """
    root = pyenv_root()
    if root:
        found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin",
                                              f"python{version}")), key=_version_key)
        found = [p for p in found if re.search(rf"/versions/{re.escape(version)}\.\d+/", p)]
        if found:
            return os.path.realpath(found[-1])
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if "shims" in directory:
            continue
        candidate = os.path.join(directory, f"python{version}")
        if os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return None


def installed_versions() -> list[str]:
    """``X.Y`` versions available here, for error messages."""
    found = set()
    root = pyenv_root()
    if root:
        for path in glob.glob(os.path.join(root, "versions", "*")):
            m = re.fullmatch(r"(\d+\.\d+)\.\d+", os.path.basename(path))
            if m:
                found.add(m.group(1))
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def not_installed(version: str) -> str:
    """The one line saying that Python ``version`` is missing, and how to get it."""
    found = ", ".join(installed_versions()) or "none"
    return (f"Python {version} is not installed here (found {found}); install it "
            f"(pyenv install {version}) or drop the env")


# ``settings.python_downloads`` (overridden by this env var): ``never`` (the default:
# machines like ours, where uv cannot download and must not try) or ``allow`` (CI runners:
# an interpreter not found on the machine is installed with ``uv python install``).
PYTHON_DOWNLOADS = ("never", "allow")
PYTHON_DOWNLOADS_ENV = "TFHUB_COMPAT_PYTHON_DOWNLOADS"


class InterpreterError(Exception):
    """uv could not find or install a managed Python: one line saying why and what to do."""


def _uv_python(args: list[str], downloads: str, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, UV_PYTHON_DOWNLOADS=downloads)
    env.pop("VIRTUAL_ENV", None)
    try:
        return subprocess.run(["uv", "python", *args], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except FileNotFoundError:
        raise InterpreterError("uv not found on PATH (pip install uv), needed by "
                               "settings.python_downloads: allow")
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"uv python {' '.join(args)} timed out after {timeout}s")


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def managed_interpreter(version: str, timeout: int = 900) -> str:
    """Real path of a uv-managed CPython ``X.Y``: the one uv already installed, else one
    ``uv python install X.Y`` downloads now; InterpreterError (one line) when uv has none
    (uv's managed builds have no 3.7: use the runner's, e.g. actions/setup-python)."""
    found = _uv_python(["find", "--managed-python", version], "never", 60)
    if found.returncode != 0:
        installed = _uv_python(["install", version], "manual", timeout)
        if installed.returncode != 0:
            raise InterpreterError(
                f"Python {version} is not installed here and `uv python install {version}` "
                f"failed ({_last_line(installed)}); install it on the machine (pyenv, "
                "actions/setup-python) or drop the env")
        found = _uv_python(["find", "--managed-python", version], "never", 60)
        if found.returncode != 0:
            raise InterpreterError(f"`uv python install {version}` succeeded but `uv python "
                                   f"find --managed-python {version}` failed "
                                   f"({_last_line(found)}); run it by hand to see why")
    path = found.stdout.strip().splitlines()[-1] if found.stdout.strip() else ""
    if not os.access(path, os.X_OK):
        raise InterpreterError(f"`uv python find --managed-python {version}` printed "
                               f"{path!r}, not an interpreter; run it by hand to see why")
    return os.path.realpath(path)


def resolve_interpreter(version: str, downloads: str = "never") -> str | None:
    """The machine's CPython ``X.Y`` (``find_interpreter``); with ``downloads == "allow"``
    and none found, a uv-managed one (installed when missing; InterpreterError when uv
    cannot). None when none is found and downloads are not allowed."""
    found = find_interpreter(version)
    if found or downloads != "allow":
        return found
    return managed_interpreter(version)
