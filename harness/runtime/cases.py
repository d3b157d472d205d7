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

MODES = ("tf1", "tf1_eager", "compat", "tf2")
GRAPH_MODES = ("tf1", "compat")
EAGER_MODES = ("tf1_eager", "tf2")
OPERATIONS = ("create", "load", "fine_tune")  # the documents' table rows
# ``download``: the hosting protocol (cache, TFHUB_MODEL_LOAD_FORMAT, redirects, faults),
# checked on models served by the harness's own hub server (``harness.hubserver``).
DOWNLOAD = "download"
# Operations that need no model from a producer: they run in the create stage.
STANDALONE = ("create", "health")
ALL_OPERATIONS = OPERATIONS + (DOWNLOAD, "health")
URL_SUFFIX = "-url"  # a load / fine-tune variant run on a handle URL, not a directory
HEALTH_MODEL = "env"
STAGES = ("create", "consume")
COLUMN_OF_MODE = {"tf1": "tf1", "tf1_eager": "tf1", "compat": "tf1", "tf2": "tf2"}
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
    # model kinds it runs on (a definition's ``kind``): ``mlp`` (the fixture), ``my_mul``
    # (the TF2 guide's MyMulModel), ``user`` (a model a user points the harness at)
    kinds: Tuple[str, ...] = ("mlp",)
    # a second create variant of a format stores its model as ``<model>.<artifact>``
    artifact: str = ""
    # a capability the model's manifest must list (a user's model may lack ``call``)
    needs: str = ""
    # only the definition's own model (``mlp``), not its ``<model>.<artifact>`` siblings
    base_only: bool = False
    # producers whose models it consumes: ``all``, or ``one`` per (format, model): the
    # consumer's own, else one made by another mode of its env (none: no case)
    producers: str = "all"

    @property
    def via(self):
        return via(self.operation, self.api)

    def produces(self, model):
        """The stored model name a create variant makes from ``model``."""
        return model + "." + self.artifact if self.artifact else model


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
    kind: str = field(default="", compare=False)  # the model's kind ("" for health checks)

    @property
    def column(self):
        return COLUMN_OF_MODE[self.mode]

    @property
    def via(self):
        return via(self.operation, self.api)

    @property
    def case_id(self):
        return case_id(self.env_id, self.mode, self.format, self.operation, self.api,
                       self.model, self.producer_env, self.producer_mode)


def via(operation, api):
    """How a case reaches its model: ``url`` (the hosting protocol) or ``path``."""
    return "url" if operation == DOWNLOAD or api.endswith(URL_SUFFIX) else "path"


def case_id(env_id, mode, fmt, operation, api, model, producer_env, producer_mode):
    """Stable, readable id: ``env/mode/format/operation/api/model[@producer/mode]``."""
    base = "/".join((env_id, mode, fmt, operation, api, model))
    if operation in STANDALONE:
        return base
    return base + "@" + producer_env + "/" + producer_mode


def parse_case_id(text):
    """The ``Case`` a case id names (no model_dir); ValueError if it is not a case id."""
    head, _, producer = text.partition("@")
    parts = head.split("/")
    if len(parts) != 6 or (parts[3] in STANDALONE) == bool(producer) or \
            (producer and producer.count("/") != 1) or not all(parts):
        raise ValueError("not a case id: %r" % (text,))
    env_id, mode, fmt, operation, api, model = parts
    p_env, _, p_mode = (producer or env_id + "/" + mode).partition("/")
    stage = "create" if operation in STANDALONE else "consume"
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


def base_model(name):
    """The model definition a stored model name comes from (``mlp.piece`` -> ``mlp``)."""
    return name.split(".", 1)[0]


def plan_cases(plan, variants):
    """Expand a stage plan (dict) into the list of cases to run, in a stable order.

    Create stage: every create variant for every model of its kind (a user's model
    is "created" by importing it: one reference run), and every health check.
    Consume stage: every load / fine-tune variant for every finished model in the
    store; a user's model only from its reference producer (``plan["references"]``).
    """
    env_id, mode, stage = plan["env"]["id"], plan["mode"], plan["stage"]
    cases = []
    if stage == "create":
        for v in variants:
            if v.operation == "health" and mode in v.modes:
                cases.append(Case("create", env_id, mode, v.format, "health", v.api,
                                  HEALTH_MODEL, env_id, mode, "", ""))
        for model in plan["models"]:
            spec = model["spec"]
            kind = spec.get("kind", "mlp")
            for v in variants:
                if v.operation != "create" or mode not in v.modes or kind not in v.kinds:
                    continue
                if kind == "user" and v.format != spec["format"]:
                    continue
                name = v.produces(model["name"])
                cases.append(Case(
                    "create", env_id, mode, v.format, "create", v.api, name, env_id, mode,
                    model_dir(plan["store"], env_id, mode, v.format, name), kind))
    elif stage == "consume":
        references = plan.get("references") or {}
        manifests = read_manifests(plan["store"])
        chosen = _one_producer(manifests, env_id, mode)
        # a selection (--case, --resume) names exactly what runs: no sampling on top
        sampled = None if plan.get("select") else _sampled(plan.get("sample"), manifests,
                                                           plan["env"], mode)
        for manifest in manifests:
            producer = manifest["producer"]
            kind = manifest.get("spec", {}).get("kind", "mlp")
            if kind == "user" and references.get(manifest["model"]) != \
                    [producer["env_id"], producer["mode"]]:
                continue
            caps = manifest.get("capabilities")
            for v in variants:
                if (v.format == manifest["format"] and v.operation not in STANDALONE
                        and mode in v.modes and kind in v.kinds
                        and (not v.needs or caps is None or v.needs in caps)
                        and (v.via != "url" or plan.get("hub_url"))
                        and (not v.base_only or manifest["model"] == base_model(
                            manifest["model"]))
                        and (v.producers == "all" or chosen.get(
                            (manifest["format"], manifest["model"])) is manifest)
                        and (sampled is None or sampled(manifest, v))):
                    cases.append(Case(
                        "consume", env_id, mode, v.format, v.operation, v.api,
                        manifest["model"], producer["env_id"], producer["mode"],
                        manifest["dir"], kind))
    else:
        raise ValueError("unknown stage %r" % (stage,))
    selected = plan.get("select")
    if selected:
        wanted = set(selected)
        cases = [c for c in cases if c.case_id in wanted]
    order = {op: i for i, op in enumerate(ALL_OPERATIONS)}
    cases.sort(key=lambda c: (c.operation != "health", c.format, order[c.operation], c.api,
                              c.model, c.producer_env, c.producer_mode))
    return cases


def _sampled(sample, manifests, env, mode):
    """None (every producer's models get every variant), or the test a (manifest, variant)
    pair must pass under the matrix's ``sampling``: every variant on the models of the
    consumer's own env and of each other ``full`` producer (one mode per model: the
    consumer's own first, then its column's), and the primary load call of the consumer's
    column on one base model per format of every other producer release."""
    if not sample:
        return None
    column = COLUMN_OF_MODE[mode]
    primary = sample["primary"].get(column, {})
    full = set(sample["full"]) | {env["id"]}
    references = _representatives(sample, manifests, env, mode, lambda m: (
        m["producer"]["env_id"], m["format"], m["model"]), full)
    covered = {sample["release"].get(e, e) for e in full}
    others = _representatives(sample, manifests, env, mode, lambda m: (
        _release(sample, m), m["format"], base_model(m["model"])), None, skip=covered)

    def keep(manifest, variant):
        producer = manifest["producer"]["env_id"]
        if producer in full:
            return references.get((producer, manifest["format"], manifest["model"])) \
                is manifest
        return (variant.operation == "load" and variant.via == "path"
                and primary.get(variant.format) == variant.api
                and others.get((_release(sample, manifest), manifest["format"],
                                base_model(manifest["model"]))) is manifest)
    return keep


def _release(sample, manifest):
    producer = manifest["producer"]["env_id"]
    return sample["release"].get(producer, producer)


def _representatives(sample, manifests, env, mode, key_of, only=None, skip=()):
    """{key: manifest}, one per ``key_of(manifest)``: made by the env of the consumer's
    flavour when there is one (else the first in matrix order), in the consumer's column
    (its own mode first).  ``only``: producer envs to consider (None: all but the releases
    in ``skip``, a definition's own model first: ``mlp`` before ``mlp.ingraph``, which a
    mode that makes no ``mlp`` of the format stands in with)."""
    order = {e: i for i, e in enumerate(sample["order"])}
    flavour = sample["flavour"].get(env["id"], "")
    column = COLUMN_OF_MODE[mode]

    def rank(manifest):
        producer = manifest["producer"]
        return (only is None and manifest["model"] != base_model(manifest["model"]),
                sample["flavour"].get(producer["env_id"], "") != flavour,
                order.get(producer["env_id"], len(order)),
                COLUMN_OF_MODE.get(producer["mode"]) != column, producer["mode"] != mode,
                MODES.index(producer["mode"]) if producer["mode"] in MODES else len(MODES))
    chosen = {}
    for manifest in sorted(manifests, key=rank):
        if only is not None:
            if manifest["producer"]["env_id"] not in only:
                continue
        elif _release(sample, manifest) in skip:
            continue
        chosen.setdefault(key_of(manifest), manifest)
    return chosen


def _one_producer(manifests, env_id, mode):
    """{(format, model): manifest} made in the consumer's env (its own mode first): a model
    the consumer can read, whatever it concludes about other producers."""
    chosen = {}
    for manifest in manifests:
        key = (manifest["format"], manifest["model"])
        producer = manifest["producer"]
        if producer["env_id"] == env_id and (key not in chosen or producer["mode"] == mode):
            chosen[key] = manifest
    return chosen


def find_variant(variants, case, kind="mlp"):
    """The variant that runs ``case`` on a model of ``kind`` (None if no plugin provides it)."""
    for v in variants:
        if (v.format, v.operation, v.api) == (case.format, case.operation, case.api) and \
                (case.operation == "health" or kind in v.kinds):
            return v
    return None
