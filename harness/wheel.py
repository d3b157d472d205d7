"""Build the harness wheel once per source change, for installing into environments.

Environments get the wheel with ``--no-deps`` (the host's dependencies, pandas and
friends, stay out of them); its ``pytest11`` entry points register the plugin.
"""
from __future__ import annotations

import glob
import hashlib
import os
import subprocess

from .errors import UserError

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_id(root: str = PROJECT_ROOT) -> str:
    digest = hashlib.sha256()
    files = sorted(glob.glob(os.path.join(root, "harness", "**", "*.py"), recursive=True))
    for path in [os.path.join(root, "pyproject.toml"), *files]:
        digest.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()[:16]


def build_wheel(cache_dir: str, root: str = PROJECT_ROOT) -> tuple[str, str]:
    """(path, id) of the harness wheel for the current sources, built if missing."""
    if not os.path.exists(os.path.join(root, "pyproject.toml")):
        raise UserError(f"{root}: no pyproject.toml; install tfhub-compat from a checkout "
                        "(pip install -e .) so environments can get the plugin")
    wid = source_id(root)
    out = os.path.join(cache_dir, wid)
    found = glob.glob(os.path.join(out, "*.whl"))
    if not found:
        try:
            proc = subprocess.run(["uv", "build", "--quiet", "--wheel", "--out-dir", out, root],
                                  capture_output=True, text=True)
        except FileNotFoundError:
            raise UserError("uv is not installed; install it (pip install uv) and run again")
        found = glob.glob(os.path.join(out, "*.whl"))
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"building the harness wheel failed:\n{proc.stderr}")
    return found[0], wid
