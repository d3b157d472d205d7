"""Cases and API variants, and the pure expansion of a plan into cases.

A *variant* is one documented way to perform an operation on a format (e.g.
``hub.load`` + ``.signatures[...]`` to load a TF1 Hub module).  Variants are
contributed through the ``tfhub_compat_variants`` hook (see ``hookspecs``); the
built-in formats use the same hook as a third-party plugin would.

A *case* is (stage, consumer env, mode, format, operation, api, model,
producer env + mode).  ``plan_cases`` is pure apart from reading the model
store's manifests, so the host can expand the same cases the plugin will run.

In-environment code: standard library only, Python 3.7 syntax.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Tuple

MODES = ("tf1", "compat", "tf2")
OPERATIONS = ("create", "load", "fine_tune")
STAGES = ("create", "consume")
COLUMN_OF_MODE = {"tf1": "tf1", "compat": "tf1", "tf2": "tf2"}
COLUMN_TITLES = {"tf1": "TF1 / TF1 compat mode in TF2", "tf2": "TF2"}
MANIFEST = "manifest.json"
GOLDEN = "golden.npz"
MODEL_SUBDIR = "model"


@dataclass(frozen=True)
class Variant:
    """One documented API for (format, operation), attempted in ``modes``."""

    format: str
    operation: str
    api: str
    modes: Tuple[str, ...]
    run: Callable = field(compare=False, repr=False)
    documented_call: str = ""


@dataclass(frozen=True)
class Case:
    stage: str
    env_id: str
    mode: str
    format: str
    operation: str
    api: str
    model: str
    producer_env: str
    producer_mode: str
    model_dir: str = field(default="", compare=False)

    @property
    def column(self):
        return COLUMN_OF_MODE[self.mode]

    @property
    def case_id(self):
        return case_id(self.env_id, self.mode, self.format, self.operation, self.api,
                       self.model, self.producer_env, self.producer_mode)


def case_id(env_id, mode, fmt, operation, api, model, producer_env, producer_mode):
    """Stable, readable id: ``env/mode/format/operation/api/model[@producer/mode]``."""
    base = "/".join((env_id, mode, fmt, operation, api, model))
    if operation == "create":
        return base
    return base + "@" + producer_env + "/" + producer_mode


def parse_case_id(text):
    """The ``Case`` a case id names (no model_dir); ValueError if it is not a case id."""
    head, _, producer = text.partition("@")
    parts = head.split("/")
    if len(parts) != 6 or (parts[3] == "create") == bool(producer) or \
            (producer and producer.count("/") != 1) or not all(parts):
        raise ValueError("not a case id: %r" % (text,))
    env_id, mode, fmt, operation, api, model = parts
    p_env, _, p_mode = (producer or env_id + "/" + mode).partition("/")
    stage = "create" if operation == "create" else "consume"
    return Case(stage, env_id, mode, fmt, operation, api, model, p_env, p_mode)


def model_dir(store, producer_env, producer_mode, fmt, model):
    return os.path.join(store, producer_env, producer_mode, fmt, model)


def read_manifests(store):
    """Manifests of every finished model in the store (sorted, stable)."""
    found = []
    if not store or not os.path.isdir(store):
        return found
    for root, _dirs, files in os.walk(store):
        if MANIFEST in files:
            with open(os.path.join(root, MANIFEST)) as fh:
                manifest = json.load(fh)
            manifest["dir"] = root
            found.append(manifest)
    found.sort(key=lambda m: (m["format"], m["model"], m["producer"]["env_id"],
                              m["producer"]["mode"]))
    return found


def plan_cases(plan, variants):
    """Expand a stage plan (dict) into the list of cases to run, in a stable order."""
    env_id, mode, stage = plan["env"]["id"], plan["mode"], plan["stage"]
    cases = []
    if stage == "create":
        for model in plan["models"]:
            for v in variants:
                if v.operation == "create" and mode in v.modes:
                    cases.append(Case(
                        "create", env_id, mode, v.format, "create", v.api, model["name"],
                        env_id, mode,
                        model_dir(plan["store"], env_id, mode, v.format, model["name"])))
    elif stage == "consume":
        for manifest in read_manifests(plan["store"]):
            producer = manifest["producer"]
            for v in variants:
                if (v.format == manifest["format"] and v.operation != "create"
                        and mode in v.modes):
                    cases.append(Case(
                        "consume", env_id, mode, v.format, v.operation, v.api,
                        manifest["model"], producer["env_id"], producer["mode"],
                        manifest["dir"]))
    else:
        raise ValueError("unknown stage %r" % (stage,))
    selected = plan.get("select")
    if selected:
        wanted = set(selected)
        cases = [c for c in cases if c.case_id in wanted]
    order = {op: i for i, op in enumerate(OPERATIONS)}
    cases.sort(key=lambda c: (c.format, order[c.operation], c.api, c.model,
                              c.producer_env, c.producer_mode))
    return cases


def find_variant(variants, case):
    """The variant that runs ``case`` (None if no plugin provides it any more)."""
    for v in variants:
        if (v.format, v.operation, v.api) == (case.format, case.operation, case.api):
            return v
    return None
