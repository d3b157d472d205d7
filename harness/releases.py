"""A matrix's release axis (``releases:``), its sampling (``sampling:``) and the documents'
calls and prerequisites: compact spellings, expanded and strictly checked at load time.

``releases:`` is a table of TF releases (Python and pins per release) crossed with
flavours (the tensorflow_hub / Keras / setuptools variant an env stands for, each with the
releases it applies to), so ~44 envs are a table of ~23 rows, not 44 hand-written entries::

    releases:
      id: "tf{release}-{flavour}"           # optional; this is the default
      modes: [compat, tf2]                  # optional; a row may set its own
      table:
        "2.15": {python: "3.11", packages: ["tensorflow-cpu==2.15.*", "numpy<2"]}
      flavours:
        hub015: {releases: "<2.17", packages: [tensorflow-hub==0.15.0, setuptools<82]}
        tfkeras: {releases: ">=2.16", packages: ["tf-keras~={release}.0"],
                  env_vars: {TF_USE_LEGACY_KERAS: "1"}}

``{release}`` in a flavour's packages is the row's release.  A row may name the flavours it
takes (``flavours: [hub015]``), which must apply to it.  Every error is one line naming the
place (``releases.table."2.10".python``).
"""
from __future__ import annotations

from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from .config import (
    Env,
    Sampling,
    _Checker,
    _is_xy,
    env_id_problem,
    env_var_map,
    mode_list,
    python_version,
    release_version,
    requirements,
)
from .runtime.cases import COLUMN_OF_MODE, HEALTH_MODEL

DEFAULT_ID = "tf{release}-{flavour}"
DEFAULT_MODES = ("compat", "tf2")
OWN = "own"  # in sampling.full: the consumer's own env


def expand(c: _Checker, raw: Any) -> tuple[Env, ...]:
    r = c.mapping(raw, "releases", ("table", "flavours"), ("id", "modes"))
    template = c.typed(r.get("id", DEFAULT_ID), "releases.id", str)
    if "{release}" not in template or "{flavour}" not in template:
        raise c.fail("releases.id", f"{template!r} must contain {{release}} and {{flavour}} "
                                    "(one id per release x flavour)")
    modes = mode_list(c, r["modes"], "releases.modes") if "modes" in r else DEFAULT_MODES
    flavours = _flavours(c, r["flavours"])
    table = c.mapping(r["table"], "releases.table", (), tuple(r["table"] or ())
                      if isinstance(r["table"], dict) else ())
    if not table:
        raise c.fail("releases.table", "must list at least one release")
    envs: list[Env] = []
    for key in sorted(table, key=lambda k: Version(str(k))
                      if isinstance(k, str) and _is_xy(k) else Version("0")):
        where = f'releases.table."{key}"'
        release = release_version(c, key, where)
        row = c.mapping(table[key], where, ("python", "packages"),
                        ("modes", "flavours", "env_vars", "description"))
        python = python_version(c, row["python"], f"{where}.python")
        packages = requirements(c, row["packages"], f"{where}.packages")
        row_modes = mode_list(c, row["modes"], f"{where}.modes") if "modes" in row else modes
        row_vars = env_var_map(c, row.get("env_vars", {}), f"{where}.env_vars")
        applies = [name for name, f in flavours.items() if release in f["releases"]]
        if "flavours" in row:
            chosen = c.str_list(row["flavours"], f"{where}.flavours")
            for j, name in enumerate(chosen):
                c.choice(name, f"{where}.flavours[{j}]", tuple(flavours), "flavour")
                if name not in applies:
                    raise c.fail(f"{where}.flavours[{j}]", f"flavour {name!r} does not apply "
                                 f"to {release} (its releases: {flavours[name]['releases']}); "
                                 "widen its releases or drop it here")
            applies = chosen
        if not applies:
            raise c.fail(where, f"no flavour applies to release {release}; widen a flavour's "
                                "releases or drop the row")
        note = c.typed(row.get("description", ""), f"{where}.description", str)
        for name in applies:
            f = flavours[name]
            env_id = template.format(release=release, flavour=name)
            problem = env_id_problem(env_id)
            if problem:
                raise c.fail("releases.id", f"makes the env id {problem}")
            extra = tuple(p.replace("{release}", release) for p in f["packages"])
            requirements(c, list(extra), f"releases.flavours.{name}.packages")
            desc = f"TF {release} ({f['description'] or name})" + (f"; {note}" if note else "")
            envs.append(Env(id=env_id, python=python, packages=packages + extra,
                            modes=row_modes, env_vars=tuple(sorted(dict(
                                row_vars + f["env_vars"]).items())),
                            description=desc, release=release, flavour=name))
    return tuple(envs)


def _flavours(c: _Checker, raw: Any) -> dict[str, dict[str, Any]]:
    names = tuple(raw or ()) if isinstance(raw, dict) else ()
    flavours = c.mapping(raw, "releases.flavours", (), names)
    if not flavours:
        raise c.fail("releases.flavours", "must name at least one flavour")
    out = {}
    for name, item in flavours.items():
        where = f"releases.flavours.{name}"
        if not isinstance(name, str) or env_id_problem(name):
            raise c.fail(where, f"{name!r}: use letters, digits, '-', '_' or '.'")
        f = c.mapping(item, where, ("packages",), ("releases", "env_vars", "description"))
        spec = c.typed(f.get("releases", ""), f"{where}.releases", str)
        try:
            specifier = SpecifierSet(spec)
        except InvalidSpecifier:
            raise c.fail(f"{where}.releases", f"{spec!r} is not a version specifier "
                                              "(e.g. \">=2.16\" or \">=2.5,<2.16\")")
        requirements(c, [p.replace("{release}", "0.0") for p in
                         c.str_list(f["packages"], f"{where}.packages", nonempty=False)],
                     f"{where}.packages", nonempty=False)
        out[name] = {"releases": specifier, "packages": tuple(f["packages"]),
                     "env_vars": env_var_map(c, f.get("env_vars", {}), f"{where}.env_vars"),
                     "description": c.typed(f.get("description", ""), f"{where}.description",
                                            str)}
    return out


def sampling(c: _Checker, raw: Any, envs: tuple[Env, ...]) -> Sampling:
    """``sampling: {full: [own, ENV...], primary: {FORMAT: {tf1: API, tf2: API}}}``."""
    from .registry import variants
    s = c.mapping(raw, "sampling", ("full", "primary"))
    ids = {e.id for e in envs}
    full = c.str_list(s["full"], "sampling.full")
    for j, name in enumerate(full):
        if name != OWN and name not in ids:
            raise c.fail(f"sampling.full[{j}]", f"{name!r} is no env of the matrix; name an "
                                                f"env id or {OWN!r}")
    loads = {(v.format, v.api) for v in variants() if v.operation == "load"}
    fmts = tuple(sorted({f for f, _ in loads}))
    primary = c.mapping(s["primary"], "sampling.primary", (), fmts)
    columns = tuple(sorted(set(COLUMN_OF_MODE.values())))
    found = []
    for fmt, by_column in primary.items():
        for col, api in c.mapping(by_column, f"sampling.primary.{fmt}", columns).items():
            where = f"sampling.primary.{fmt}.{col}"
            c.choice(api, where, tuple(sorted(a for f, a in loads if f == fmt)),
                     f"load call of {fmt}")
            found.append((fmt, col, api))
    return Sampling(tuple(full), tuple(found))


def calls(c: _Checker, raw: Any, where: str, fmt: str, operation: str) -> tuple[str, ...]:
    """An expectation's ``calls``: variants of its format and operation."""
    from .registry import variants
    names = c.str_list(raw, where, nonempty=False)
    known = tuple(sorted({v.api for v in variants()
                          if (v.format, v.operation) == (fmt, operation)}))
    for j, api in enumerate(names):
        c.choice(api, f"{where}[{j}]", known, f"{fmt} {operation} variant")
    return tuple(names)


def prerequisites(c: _Checker, raw: Any) -> tuple[str, ...]:
    """Health checks (api names) that must pass for the documents' prerequisites to hold."""
    from .registry import variants
    names = c.str_list(raw, "prerequisites", nonempty=False)
    known = tuple(sorted(v.api for v in variants() if v.operation == "health"))
    for j, api in enumerate(names):
        c.choice(api, f"prerequisites[{j}]", known, f"health check ({HEALTH_MODEL} check)")
    return tuple(names)
