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
