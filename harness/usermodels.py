"""Users' own models: ``--model PATH_OR_URL`` and ``models: [{name, handle, ...}]``.

A user's model is a directory or a URL served with the TF Hub hosting protocol.
Its format is detected from its files (``tfhub_module.pb``: TF1 Hub format;
``keras_metadata.pb``: a Keras SavedModel; otherwise a TF2 SavedModel) unless
given; a model that cannot be read is a one-line ``UserError`` naming it and why.
"""
from __future__ import annotations

import os
import re
import tarfile
import urllib.error
import urllib.parse
import urllib.request

from .errors import UserError

FORMATS = ("tf1_hub", "saved_model", "keras_saved_model")
CHOICES = ("auto",) + FORMATS
NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def is_url(handle: str) -> bool:
    return urllib.parse.urlparse(handle).scheme in ("http", "https")


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


def _url_names(url: str, where: str) -> set[str]:
    """Top-level file names of the compressed model a hosting-protocol URL serves."""
    parts = urllib.parse.urlparse(url)
    query = (parts.query + "&" if parts.query else "") + "tf-hub-format=compressed"
    try:
        with urllib.request.urlopen(parts._replace(query=query).geturl(), timeout=60) as resp:
            with tarfile.open(fileobj=resp, mode="r|gz") as tar:
                return {os.path.normpath(m.name).split("/")[0] for m in tar} - {"."}
    except urllib.error.HTTPError as exc:
        raise UserError(f"{where}: {url} answered HTTP {exc.code} {exc.reason}; check the URL")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{where}: cannot download {url}: {reason}; check the URL and server")
    except tarfile.TarError as exc:
        raise UserError(f"{where}: {url} did not answer a tar.gz model archive ({exc}); "
                        "serve it with the TF Hub hosting protocol")


def detect_format(handle: str, where: str) -> str:
    names = _url_names(handle, where) if is_url(handle) else _dir_names(handle, where)
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
               where: str = "--model", base: str = ".") -> dict:
    """The spec a user's model runs with (``kind: user``); checked here, not in the envs."""
    if fmt not in CHOICES:
        raise UserError(f"{where}: unknown format {fmt!r} (known: {', '.join(CHOICES)})")
    if not is_url(handle):
        handle = os.path.abspath(os.path.join(base, handle))
    detected = detect_format(handle, where) if fmt == "auto" or not is_url(handle) else fmt
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
