"""Load and strictly validate ``matrix.yaml`` into typed, frozen objects.

Every problem is one ``ConfigError`` line: ``matrix.yaml: envs[2].python: 3.5 is
not installed here (found 3.7, 3.11); install it or drop the env``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from .errors import ConfigError
from .interpreters import PYTHON_DOWNLOADS, PYTHON_DOWNLOADS_ENV, find_interpreter, not_installed
from .registry import formats as known_formats
from .runtime.cases import COLUMN_OF_MODE, MODES, OPERATIONS
from .usermodels import FETCH_KEYS, NAME, FetchLimits, user_model

BACKENDS = ("venv", "docker")
DEVICES = ("cpu", "gpu")
LEVELS = ("supported", "not_supported")
# model definitions by kind: {key: type}, required keys
SPEC_KEYS = {
    "mlp": ({"name": str, "kind": str, "description": str, "input_dim": int, "hidden": int,
             "output_dim": int, "seed": int, "l2": float, "dropout": float,
             "golden_batch": int, "train_batch": int, "train_steps": int,
             "learning_rate": float, "vocab": list},
            ("name", "input_dim", "hidden", "output_dim", "seed", "l2", "dropout")),
    "my_mul": ({"name": str, "kind": str, "description": str, "v_init": float, "inputs": list,
                "expected": list, "expected_loss": float}, ("name", "kind")),
}


@dataclass(frozen=True)
class Env:
    id: str
    python: str
    packages: tuple[str, ...]
    modes: tuple[str, ...]
    env_vars: tuple[tuple[str, str], ...] = ()
    backend: str = "venv"
    device: str = "cpu"
    description: str = ""
    # from a ``releases:`` table (or given by hand): the TF release (major.minor) and the
    # flavour (hub / Keras / pins variant) this env stands for; "" when not on the axis
    release: str = ""
    flavour: str = ""
    # ``backend: docker``: the base image the derived image is built from
    image: str = ""

    @property
    def gpu(self) -> bool:
        """``gpu: true`` (or ``device: gpu``): the env must see a GPU (docker: requests them)."""
        return self.device == "gpu"


@dataclass(frozen=True)
class Sampling:
    """``sampling:``: which producers' models a consumer runs every variant on (``full``:
    env ids, ``own`` = the consumer's own env), and the one call per format x column it
    runs on one model of every other producer release (``primary``)."""
    full: tuple[str, ...]
    primary: tuple[tuple[str, str, str], ...]  # (format, column, api)


@dataclass(frozen=True)
class Model:
    name: str
    definition: str
    spec: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class Expectation:
    format: str
    operation: str
    column: str
    documented: str
    api: str
    claim: str
    source: str
    # the variants (api names) the documents name for this cell: its level and verdict
    # count these only (every variant stays in the drill-down); () = every variant
    calls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Publish:
    """What the published report files may show (``settings.publish``): the host name,
    and the values of these env vars (every other value shows as ``<hidden>``)."""
    host: bool = False
    env_vars: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    envs_dir: str
    reports_dir: str
    workers: int
    parallel: int
    stage_timeout_s: int
    atol: float
    rtol: float
    case_timeout_s: int = 300
    publish: Publish = field(default_factory=Publish)
    fetch: FetchLimits = field(default_factory=FetchLimits)
    # may uv download a Python an env names that the machine lacks? ``never`` | ``allow``
    # (``settings.python_downloads``; the env var TFHUB_COMPAT_PYTHON_DOWNLOADS overrides it)
    python_downloads: str = "never"


@dataclass(frozen=True)
class Matrix:
    path: str
    settings: Settings
    envs: tuple[Env, ...]
    models: tuple[Model, ...]
    expectations: tuple[Expectation, ...]
    sampling: Sampling | None = None
    # health checks (api names) an env x mode must pass for the documents' prerequisites
    # to hold there: its cases still run and show, but do not count in the headline levels
    prerequisites: tuple[str, ...] = ()

    def env(self, env_id: str) -> Env:
        for env in self.envs:
            if env.id == env_id:
                return env
        raise KeyError(env_id)

    def expectation(self, fmt: str, operation: str, column: str) -> Expectation | None:
        for e in self.expectations:
            if (e.format, e.operation, e.column) == (fmt, operation, column):
                return e
        return None


class _Checker:
    """Small strict schema checks with located, fixable messages."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(self.path, where, message)

    def mapping(self, value: Any, where: str, required: tuple[str, ...],
                optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        allowed = required + optional
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else \
                    f"allowed keys: {', '.join(allowed)}"
                raise self.fail(_join(where, key), f"unknown key; {hint}")
        for key in required:
            if key not in value:
                raise self.fail(where or "top level", f"missing required key {key!r}")
        return value

    def typed(self, value: Any, where: str, kind: type | tuple[type, ...]) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        elif float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(where, f"expected {names}, got {_kind(value)} {value!r}")
        return value

    def choice(self, value: Any, where: str, choices: tuple[str, ...], what: str) -> str:
        self.typed(value, where, str)
        if value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(where, f"unknown {what} {value!r} (known: "
                                   f"{', '.join(choices)}){hint}")
        return value

    def str_list(self, value: Any, where: str, nonempty: bool = True) -> list[str]:
        self.typed(value, where, list)
        if nonempty and not value:
            raise self.fail(where, "must not be empty")
        for i, item in enumerate(value):
            self.typed(item, f"{where}[{i}]", str)
        return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def load(path: str) -> Matrix:
    """Read and validate ``path``; raise ConfigError (one line) on any problem.

    A missing interpreter is no problem of the matrix (its env's runs become env_error
    records; ``unprovisionable`` lists them). ``check_dirs`` checks the settings'
    directories (``validate`` and ``run``).
    """
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found; pass --matrix PATH or create it "
                                    "(see README)")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(path, where, f"invalid YAML: {problem}; fix the syntax there")
    return validate(raw, path)


def validate(raw: Any, path: str) -> Matrix:
    from . import releases  # the release axis and sampling (they use this module's checks)
    c = _Checker(path)
    top = c.mapping(raw, "", ("expectations",),
                    ("schema_version", "settings", "models", "envs", "releases", "sampling",
                     "prerequisites"))
    if "schema_version" in top and c.typed(top["schema_version"], "schema_version", int) != 1:
        raise c.fail("schema_version", f"unsupported version {top['schema_version']}; use 1")
    base = os.path.dirname(os.path.abspath(path))
    settings = _settings(c, top.get("settings", {}), base)
    if "envs" not in top and "releases" not in top:
        raise c.fail("top level", "missing required key 'envs' (or a 'releases' table)")
    envs = _envs(c, top.get("envs", []), allow_empty="releases" in top)
    if "releases" in top:
        envs = _unique(c, envs + releases.expand(c, top["releases"]))
    models = _models(c, top.get("models", [{"name": "mlp", "definition": "models/mlp.json"}]),
                     base, settings.fetch)
    expectations = _expectations(c, _shared_expectations(c, top["expectations"], base))
    sampling = releases.sampling(c, top["sampling"], envs) if "sampling" in top else None
    prerequisites = releases.prerequisites(c, top.get("prerequisites", []))
    return Matrix(os.path.abspath(path), settings, envs, models, expectations, sampling,
                  prerequisites)


def _shared_expectations(c: _Checker, raw: Any, base: str) -> Any:
    """``expectations: ../matrix.yaml``: the list another matrix file holds (one copy of
    the documents' table for every matrix)."""
    if not isinstance(raw, str):
        return raw
    path = raw if os.path.isabs(raw) else os.path.join(base, raw)
    try:
        with open(path) as fh:
            other = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise c.fail("expectations", f"cannot read {raw!r} ({exc.__class__.__name__}); name "
                                     "a matrix file whose expectations to use, or list them")
    if not isinstance(other, dict) or not isinstance(other.get("expectations"), list):
        raise c.fail("expectations", f"{raw!r} has no expectations list; name a matrix file "
                                     "that has one")
    return other["expectations"]


def _unique(c: _Checker, envs: tuple[Env, ...]) -> tuple[Env, ...]:
    seen: set[str] = set()
    for env in envs:
        if env.id in seen:
            raise c.fail("releases", f"makes env {env.id!r}, which envs: also has; rename one "
                                     "(releases.id or the env's id)")
        seen.add(env.id)
    return envs


def _settings(c: _Checker, raw: Any, base: str) -> Settings:
    s = c.mapping(raw, "settings", (), ("envs_dir", "reports_dir", "workers", "parallel",
                                         "stage_timeout_s", "case_timeout_s", "tolerance",
                                         "publish", "fetch", "python_downloads"))
    workers = c.typed(s.get("workers", 1), "settings.workers", int)
    if workers < 0:
        raise c.fail("settings.workers", "must be >= 0 (0 runs cases in the pytest process)")
    parallel = c.typed(s.get("parallel", 2), "settings.parallel", int)
    if parallel < 1:
        raise c.fail("settings.parallel", "must be >= 1 (env x mode processes at once)")
    timeout = c.typed(s.get("stage_timeout_s", 1800), "settings.stage_timeout_s", int)
    if timeout <= 0:
        raise c.fail("settings.stage_timeout_s", "must be > 0 seconds")
    case_timeout = c.typed(s.get("case_timeout_s", 300), "settings.case_timeout_s", int)
    if not 0 < case_timeout <= timeout:
        raise c.fail("settings.case_timeout_s", f"must be > 0 and at most stage_timeout_s "
                                                f"({timeout}) seconds")
    tol = c.mapping(s.get("tolerance", {}), "settings.tolerance", (), ("atol", "rtol"))
    atol = float(c.typed(tol.get("atol", 1e-5), "settings.tolerance.atol", float))
    rtol = float(c.typed(tol.get("rtol", 1e-5), "settings.tolerance.rtol", float))
    for key, value in (("atol", atol), ("rtol", rtol)):
        if value < 0:
            raise c.fail(f"settings.tolerance.{key}", "must be >= 0")

    def path_of(key: str, default: str) -> str:
        value = c.typed(s.get(key, default), f"settings.{key}", str)
        return value if os.path.isabs(value) else os.path.join(base, value)

    pub = c.mapping(s.get("publish", {}), "settings.publish", (), ("host", "env_vars"))
    names = c.str_list(pub.get("env_vars", []), "settings.publish.env_vars", nonempty=False)
    for i, name in enumerate(names):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise c.fail(f"settings.publish.env_vars[{i}]", f"{name!r} is not an env var "
                         "name (letters, digits, '_'; not a digit first)")
    publish = Publish(c.typed(pub.get("host", False), "settings.publish.host", bool),
                      tuple(names))
    fetch = _fetch_limits(c, c.mapping(s.get("fetch", {}), "settings.fetch", (), FETCH_KEYS),
                          "settings.fetch", FetchLimits())
    return Settings(path_of("envs_dir", ".envs"), path_of("reports_dir", "reports"),
                    workers, parallel, timeout, atol, rtol, case_timeout, publish, fetch,
                    _python_downloads(c, s))


def _python_downloads(c: _Checker, s: dict) -> str:
    """``settings.python_downloads`` (default ``never``), or the env var that overrides it
    (CI sets ``allow``; an empty value is unset)."""
    override = os.environ.get(PYTHON_DOWNLOADS_ENV, "")
    if override:
        if override not in PYTHON_DOWNLOADS:
            raise c.fail("settings.python_downloads", f"{PYTHON_DOWNLOADS_ENV}={override!r} "
                         f"overrides it with an unknown value; set it to "
                         f"{' or '.join(PYTHON_DOWNLOADS)} (or unset it)")
        return override
    return c.choice(s.get("python_downloads", "never"), "settings.python_downloads",
                    PYTHON_DOWNLOADS, "value")


def _fetch_limits(c: _Checker, raw: dict, where: str, base: FetchLimits) -> FetchLimits:
    """``base`` with the fetch caps ``raw`` sets (numbers > 0)."""
    changes = {}
    for key in FETCH_KEYS:
        if key in raw:
            value = c.typed(raw[key], _join(where, key), float)
            if not 0 < value < float("inf"):
                raise c.fail(_join(where, key), "must be > 0 and finite")
            changes[key] = float(value)
    return dataclasses.replace(base, **changes)


def check_dirs(matrix: Matrix, shown: str | None = None) -> None:
    """``settings.reports_dir`` and ``envs_dir`` are (or can be made) directories this
    process can write, or ConfigError (one line, naming the matrix as ``shown``, default
    its path). Leaves nothing behind."""
    for key in ("reports_dir", "envs_dir"):
        problem = _dir_problem(getattr(matrix.settings, key))
        if problem:
            raise ConfigError(shown or matrix.path, f"settings.{key}", f"{problem}; set "
                              f"settings.{key} to a directory you can write (or make it "
                              "writable)")


def _dir_problem(path: str) -> str | None:
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "is not a directory" if existing == path else \
            f"cannot be created: {existing} is not a directory"
        return f"{path} {what}"
    try:  # create what is missing (or a file in it) inside a probe, then remove the probe
        probe = tempfile.mkdtemp(prefix=".tfhub-compat-probe-", dir=existing)
    except OSError as exc:
        if existing == path:
            return f"{path} is not writable ({exc.strerror})"
        return f"{path} cannot be created: {existing} takes no new directory ({exc.strerror})"
    try:
        os.makedirs(os.path.join(probe, os.path.relpath(path, existing)), exist_ok=True)
    except OSError as exc:
        return f"{path} cannot be created in {existing}: {exc.strerror}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return None


def unprovisionable(matrix: Matrix, shown: str | None = None) -> list[str]:
    """One line per env whose interpreter is not installed here: its runs become env_error
    records (the others run); ``harness validate`` warns with these. With
    ``settings.python_downloads: allow`` uv installs a missing one when the env is
    provisioned (and an env whose Python uv has no build of becomes env_error then)."""
    shown = shown or matrix.path
    if matrix.settings.python_downloads == "allow":
        return []
    return [f"{shown}: envs[{i}] ({env.id}): {not_installed(env.python)}; its runs will be "
            "env_error records" for i, env in enumerate(matrix.envs)
            if find_interpreter(env.python) is None]


def _envs(c: _Checker, raw: Any, allow_empty: bool = False) -> tuple[Env, ...]:
    c.typed(raw, "envs", list)
    if not raw and not allow_empty:
        raise c.fail("envs", "must list at least one environment")
    envs: list[Env] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"envs[{i}]"
        e = c.mapping(item, where, ("id", "python", "packages", "modes"),
                      ("env_vars", "backend", "device", "gpu", "image", "description", "release",
                       "flavour"))
        env_id = c.typed(e["id"], f"{where}.id", str)
        problem = env_id_problem(env_id)
        if problem:
            raise c.fail(f"{where}.id", problem)
        if env_id in seen:
            raise c.fail(f"{where}.id", f"duplicate id {env_id!r} (also envs[{seen[env_id]}]); "
                                        "give each env its own id")
        seen[env_id] = i
        python = python_version(c, e["python"], f"{where}.python")
        packages = requirements(c, e["packages"], f"{where}.packages")
        modes = mode_list(c, e["modes"], f"{where}.modes")
        env_vars = env_var_map(c, e.get("env_vars", {}), f"{where}.env_vars")
        release = c.typed(e.get("release", ""), f"{where}.release", str)
        backend = c.choice(e.get("backend", "venv"), f"{where}.backend", BACKENDS, "backend")
        image = c.typed(e.get("image", ""), f"{where}.image", str)
        if backend == "docker" and not image:
            raise c.fail(f"{where}.image", "a docker env names its base image, e.g. "
                                           "image: tensorflow/tensorflow:2.15.0")
        if image and backend != "docker":
            raise c.fail(f"{where}.image", "only a docker env has an image; add "
                                           "backend: docker or remove image")
        device = c.choice(e.get("device", "cpu"), f"{where}.device", DEVICES, "device")
        if c.typed(e.get("gpu", False), f"{where}.gpu", bool):
            device = "gpu"
        envs.append(Env(
            id=env_id, python=python, packages=packages, modes=modes, env_vars=env_vars,
            backend=backend, image=image, device=device,
            description=c.typed(e.get("description", ""), f"{where}.description", str),
            release=release and release_version(c, release, f"{where}.release"),
            flavour=c.typed(e.get("flavour", ""), f"{where}.flavour", str)))
    return tuple(envs)


def env_id_problem(env_id: str) -> str | None:
    if not env_id or not all(ch.isalnum() or ch in "-_." for ch in env_id):
        return f"{env_id!r}: use letters, digits, '-', '_' or '.'"
    return None


def _major_minor(c: _Checker, value: Any, where: str, quoted: str, form: str) -> str:
    """A quoted ``major.minor`` (YAML reads 3.10 unquoted as the number 3.1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise c.fail(where, f"{value!r} was read as a number; quote it ({quoted})")
    c.typed(value, where, str)
    if not _is_xy(value):
        raise c.fail(where, f"{value!r}: {form}")
    return value


def python_version(c: _Checker, python: Any, where: str) -> str:
    return _major_minor(c, python, where, 'python: "3.10"',
                        'write the version as "3.11" (quoted, major.minor)')


def release_version(c: _Checker, release: Any, where: str) -> str:
    """A TF release as ``major.minor``."""
    return _major_minor(c, release, where, '"2.10"', 'write the release as "2.15" (major.minor)')


def requirements(c: _Checker, raw: Any, where: str, nonempty: bool = True
                 ) -> tuple[str, ...]:
    packages = c.str_list(raw, where, nonempty)
    for j, req in enumerate(packages):
        try:
            Requirement(req)
        except InvalidRequirement as exc:
            raise c.fail(f"{where}[{j}]", f"{req!r} is not a requirement: {exc}")
    return tuple(packages)


def mode_list(c: _Checker, raw: Any, where: str) -> tuple[str, ...]:
    modes = c.str_list(raw, where)
    for j, mode in enumerate(modes):
        c.choice(mode, f"{where}[{j}]", MODES, "mode")
    if len(set(modes)) != len(modes):
        raise c.fail(where, "lists a mode twice")
    return tuple(modes)


def env_var_map(c: _Checker, raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    env_vars = c.mapping(raw, where, (), tuple(raw or ()) if isinstance(raw, dict) else ())
    for key, value in env_vars.items():
        c.typed(value, f"{where}.{key}", str)
    return tuple(sorted(env_vars.items()))


def _is_xy(version: str) -> bool:
    parts = version.split(".")
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def _models(c: _Checker, raw: Any, base: str, fetch: FetchLimits) -> tuple[Model, ...]:
    """Fixture models (``definition``: a JSON file) and users' models (``handle``)."""
    c.typed(raw, "models", list)
    models: list[Model] = []
    for i, item in enumerate(raw):
        where = f"models[{i}]"
        if isinstance(item, dict) and "handle" in item:
            m = c.mapping(item, where, ("name", "handle"),
                          ("format", "inputs", "signature") + FETCH_KEYS)
            for key in m:
                if key not in FETCH_KEYS:
                    c.typed(m[key], f"{where}.{key}", str)
            spec = user_model(m["handle"], m.get("format", "auto"), m.get("inputs"),
                              m.get("signature"), m["name"], f"{c.path}: {where}", base,
                              _fetch_limits(c, m, where, fetch))
            model = Model(spec["name"], spec["handle"], spec)
        else:
            m = c.mapping(item, where, ("name", "definition"))
            name = c.typed(m["name"], f"{where}.name", str)
            definition = c.typed(m["definition"], f"{where}.definition", str)
            full = definition if os.path.isabs(definition) else os.path.join(base, definition)
            model = Model(name, full, load_model_spec(full, name))
        if not NAME.match(model.name):
            raise c.fail(f"{where}.name", f"{model.name!r}: use letters, digits, '-' or '_'")
        if any(other.name == model.name for other in models):
            raise c.fail(f"{where}.name", f"duplicate model name {model.name!r}")
        models.append(model)
    return tuple(models)


def load_model_spec(path: str, name: str) -> dict[str, Any]:
    """Read and check a fixture model definition (JSON)."""
    c = _Checker(path)
    try:
        with open(path) as fh:
            spec = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "", "model definition not found; fix models[].definition")
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"line {exc.lineno}, column {exc.colno}",
                          f"invalid JSON: {exc.msg}")
    if not isinstance(spec, dict):
        raise c.fail("", f"expected a JSON object, got {_kind(spec)}")
    kind = c.choice(spec.get("kind", "mlp"), "kind", tuple(SPEC_KEYS), "model kind")
    keys, required = SPEC_KEYS[kind]
    c.mapping(spec, "", required, tuple(k for k in keys if k not in required))
    for key, typ in keys.items():
        if key in spec:
            c.typed(spec[key], key, typ)
    if spec["name"] != name:
        raise c.fail("name", f"{spec['name']!r} differs from the matrix's model name {name!r}; "
                             "make them equal")
    if kind == "mlp" and not 0 <= spec["dropout"] < 1:
        raise c.fail("dropout", "must be in [0, 1)")
    return spec


def _expectations(c: _Checker, raw: Any) -> tuple[Expectation, ...]:
    from . import releases
    c.typed(raw, "expectations", list)
    columns = tuple(sorted(set(COLUMN_OF_MODE.values())))
    fmts = known_formats()
    found: list[Expectation] = []
    seen: dict[tuple[str, str, str], int] = {}
    for i, item in enumerate(raw):
        where = f"expectations[{i}]"
        e = c.mapping(item, where, ("format", "operation", "column", "documented", "claim"),
                      ("api", "source", "calls"))
        exp = Expectation(
            format=c.choice(e["format"], f"{where}.format", fmts, "format"),
            operation=c.choice(e["operation"], f"{where}.operation", OPERATIONS, "operation"),
            column=c.choice(e["column"], f"{where}.column", columns, "column"),
            documented=c.choice(e["documented"], f"{where}.documented", LEVELS, "level"),
            api=c.typed(e.get("api", ""), f"{where}.api", str),
            claim=c.typed(e["claim"], f"{where}.claim", str),
            source=c.typed(e.get("source", ""), f"{where}.source", str),
            calls=releases.calls(c, e.get("calls", []), f"{where}.calls", e["format"],
                                 e["operation"]))
        key = (exp.format, exp.operation, exp.column)
        if key in seen:
            raise c.fail(where, f"duplicate expectation for {'/'.join(key)} "
                                f"(also expectations[{seen[key]}]); keep one")
        seen[key] = i
        found.append(exp)
    return tuple(found)
