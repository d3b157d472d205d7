"""Result records: the closed set of outcomes and the append-only JSONL writer.

In-environment code: standard library only, Python 3.7 syntax.  The host reads
the same files (see ``harness.collect``), so this module is the one place that
defines the record schema.
"""
from __future__ import annotations

import json
import math
import os
import traceback

from .cases import via

SCHEMA_VERSION = 1

PASSED = "passed"
FAILED = "failed"  # ran, wrong result (numbers, variables not trained, ...)
ERROR = "error"  # the API under test raised: the evidence of "not supported"
SKIPPED = "skipped"
CRASHED = "crashed"  # the process died while running the case
TIMEOUT = "timeout"
ENV_ERROR = "env_error"  # the environment could not be provisioned or import TF
# an exception raised by harness code outside the documented call under test (set-up,
# conversions, checks, the store, the harness's own hub server): a bug to fix, never
# evidence about the library; recorded with its full traceback
HARNESS_ERROR = "harness_error"

OUTCOMES = (PASSED, FAILED, ERROR, SKIPPED, CRASHED, TIMEOUT, ENV_ERROR, HARNESS_ERROR)
INFRA_OUTCOMES = (CRASHED, TIMEOUT, ENV_ERROR, HARNESS_ERROR)

# Every record has at least these keys (None where not applicable).
FIELDS = (
    "schema_version", "run_id", "case_id", "stage", "env_id", "mode", "column",
    "python", "tensorflow", "tensorflow_hub", "keras", "device", "backend",
    "format", "operation", "api", "model", "producer_env", "producer_mode",
    "outcome", "error_type", "message", "traceback", "duration_s",
    "max_abs_err", "max_rel_err", "details", "repro", "model_kind", "via",
)

TRACEBACK_LINES = 40


class CheckFailed(AssertionError):
    """Raised by case bodies when the API ran but the result is wrong."""


class HarnessFault(Exception):
    """Raised by harness code (the store, a helper process, a missing golden): never the
    library's answer, even when it is raised inside a variant's ``under_test`` region."""


def make_record(case, env_info, **fields):
    """Return a complete record for ``case`` (a ``Case``) run with ``env_info``."""
    rec = dict.fromkeys(FIELDS)
    rec.update(
        schema_version=SCHEMA_VERSION,
        case_id=case.case_id,
        stage=case.stage,
        env_id=case.env_id,
        mode=case.mode,
        column=case.column,
        format=case.format,
        operation=case.operation,
        api=case.api,
        model=case.model,
        producer_env=case.producer_env,
        producer_mode=case.producer_mode,
        model_kind=case.kind or None,
        via=via(case.operation, case.api),
        details={},
    )
    rec.update(env_info)
    rec.update(fields)
    return rec


def describe_exception(exc, limit=TRACEBACK_LINES):
    """(error_type, message, traceback) of a raised exception: an excerpt of at most
    ``limit`` lines (None: the whole traceback)."""
    etype = type(exc)
    name = etype.__name__
    module = getattr(etype, "__module__", "")
    if module and module not in ("builtins", "exceptions"):
        name = module + "." + name
    lines = traceback.format_exception(etype, exc, exc.__traceback__)
    text = "".join(lines).splitlines()
    if limit is not None and len(text) > limit:
        text = text[:10] + ["..."] + text[-(limit - 11):]
    message = str(exc).strip() or repr(exc)
    return name, message, "\n".join(text)


class RecordWriter(object):
    """Appends one JSON line per finished case and flushes it to disk at once.

    One file per process (per xdist worker) so lines never interleave; a run
    killed half-way keeps every record written before it died.
    """

    def __init__(self, path):
        self.path = path
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent)

    def write(self, record):
        line = json.dumps(strict_json(record), sort_keys=True, default=_jsonable,
                          allow_nan=False)
        with open(self.path, "a+b") as fh:
            if fh.tell() and not _ends_line(fh):  # a line cut by a killed process
                line = "\n" + line
            fh.write((line + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())


def _ends_line(fh):
    fh.seek(-1, os.SEEK_END)
    return fh.read(1) == b"\n"


def strict_json(value):
    """``value`` with every NaN / infinity (a loss that diverged, numpy scalars included)
    replaced by None: JSON has no such numbers, and strict parsers refuse them."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy
        return strict_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, value, **dump_kwargs):
    """Write ``value`` to ``path`` as strict JSON, atomically (a temporary file of this
    process, then a rename): a reader never sees half a file."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as fh:
        json.dump(strict_json(value), fh, allow_nan=False, **dump_kwargs)
    os.rename(tmp, path)


def _jsonable(value):
    return str(value)  # what strict_json leaves that JSON cannot hold (bytes, objects)
