"""Environment backends: how an env's install is made and how a command runs in it.

A backend is a small protocol (cf. nox's ``ProcessEnv.create() -> bool``):
``provision(env)`` returns a ``Provisioned`` (``created`` is True if the install
is new, False if it was reused) or raises ``ProvisionError``, which the pipeline
turns into ``env_error`` records while the run goes on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..config import Env


class ProvisionError(Exception):
    """The environment could not be made or is not what was asked for."""


@dataclass
class Provisioned:
    env_id: str
    python: str  # interpreter inside the environment
    location: str
    created: bool
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        return [self.python, *args]


class Backend(Protocol):
    name: str

    def provision(self, env: Env) -> Provisioned: ...


def get_backend(name: str, **kwargs) -> Backend:
    from .venv import VenvBackend
    backends = {"venv": VenvBackend}
    return backends[name](**kwargs)


# The versions a report shows per environment (canonical distribution names).
REPORTED_PACKAGES = ("tensorflow", "tensorflow-cpu", "tensorflow-hub", "keras", "tf-keras",
                     "protobuf", "numpy", "setuptools", "h5py", "pytest", "pytest-xdist")
