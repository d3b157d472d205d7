"""Loading a model in *another* Python process (same env, same mode).

Re-export after fine-tuning is checked by reloading the export elsewhere, and the
hosting protocol's cache by a second process that must find the model in
``TFHUB_CACHE_DIR`` without downloading it.  One long-lived process per pytest
worker and mode does that (TF is imported once, not once per case); it has never
loaded the case's model, and every job may set environment variables (e.g.
``TFHUB_CACHE_DIR``) for its own duration.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..records import HarnessFault

STDERR_LINES = 15

_LOADER = r"""
import json, os, sys, time, traceback
import numpy as np
from harness.runtime.modes import bootstrap
mode = sys.argv[1]
runtime = bootstrap(mode)
tf = runtime.tf


def call(job, x):
    # runtime.hub here, not at start: where tensorflow_hub cannot import, that is the
    # answer to the job (the library's error), not a loader that dies
    obj = runtime.hub.load(job["handle"])
    fn = obj.signatures[job["signature"]] if job.get("signature") else obj
    y = fn(tf.constant(x))
    return y[job["output_key"]] if job.get("output_key") else y


for line in sys.stdin:
    job = json.loads(line)
    started = time.time()
    answer = {"ok": True}
    saved = {k: os.environ.get(k) for k in job.get("env", {})}
    os.environ.update(job.get("env", {}))
    try:
        if job.get("handle"):
            x = np.load(job["inputs"])["x"]
            if runtime.graph_mode:
                with tf.Graph().as_default():
                    y = call(job, x)
                    with tf.Session() as sess:
                        sess.run([tf.global_variables_initializer(), tf.tables_initializer()])
                        y = sess.run(y)
            else:
                y = call(job, x)
            np.savez(job["out"], y=np.asarray(y))
    except Exception as exc:
        etype = type(exc)
        answer = {"ok": False, "type": etype.__module__ + "." + etype.__name__,
                  "message": str(exc), "traceback": traceback.format_exc()}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    answer.update(started=started, finished=time.time())
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


class ElsewhereError(Exception):
    """Loading in the other process failed (its error and traceback inside)."""


class LoaderDied(HarnessFault):
    """The other process itself died (not an error of the load it was given)."""


class _Loader(object):
    """The other process: jobs in on stdin, one JSON answer per job on stdout."""

    def __init__(self, mode):
        self.mode = mode
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LOADER, mode], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr, env=dict(os.environ),
            universal_newlines=True)

    def submit(self, job):
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def answer(self, job=True):
        """The answer to the job submitted last. A process that dies while it runs a load
        (TensorFlow aborting on the model) answers that it failed; one that dies before
        it is ready (``job=False``) is the harness's own failure (``LoaderDied``)."""
        line = self.proc.stdout.readline()
        if not line:  # the process died: its stderr says why
            self.proc.wait()
            self.stderr.seek(0)
            tail = "\n".join([ln for ln in self.stderr.read().decode("utf-8", "replace")
                              .splitlines() if ln.strip()][-STDERR_LINES:])
            died = "the other %s-mode process exited with %s" % (self.mode,
                                                                 self.proc.returncode)
            if not job:
                raise LoaderDied("%s before it was ready: %s" % (died, tail))
            now = time.time()
            return {"ok": False, "type": "ProcessDied", "message": died + " while loading",
                    "traceback": tail, "started": now, "finished": now}
        return json.loads(line)


_loaders = {}


def loader(mode):
    """The (started, ready) other process of this worker for ``mode``."""
    proc = _loaders.get(mode)
    if proc is None or proc.proc.poll() is not None:
        proc = _loaders[mode] = _Loader(mode)
        proc.submit({})  # wait until TF is imported: later jobs start at once
        proc.answer(job=False)
    return proc


class Pending(object):
    """A load submitted to the other process; ``result()`` waits for its outputs.

    Its answer must be read (``wait``) before the process takes another job, also
    when the case fails in between: the next job would read this one's answer.
    """

    def __init__(self, mode, handle, x, env=None, signature=None, output_key=None):
        self.proc = loader(mode)
        self.work = tempfile.mkdtemp(prefix="tfhub-compat-elsewhere-")
        self.out = os.path.join(self.work, "y.npz")
        inputs = os.path.join(self.work, "x.npz")
        np.savez(inputs, x=x)
        self.proc.submit({"handle": handle, "inputs": inputs, "out": self.out,
                          "env": dict(env or {}), "signature": signature,
                          "output_key": output_key})
        self.started = self.finished = self._answer = self._y = None

    def wait(self):
        """Read the other process's answer and outputs (once)."""
        if self._answer is None:
            try:
                self._answer = self.proc.answer()
                if self._answer["ok"]:
                    with np.load(self.out) as data:
                        self._y = data["y"]
            finally:
                shutil.rmtree(self.work, ignore_errors=True)
            self.started, self.finished = self._answer["started"], self._answer["finished"]
        return self._answer

    def answered(self, timeout):
        """Whether the other process has answered (or died) within ``timeout`` seconds."""
        if self._answer is not None:
            return True
        return bool(select.select([self.proc.proc.stdout], [], [], timeout)[0])

    def result(self):
        """The outputs, or the other process's error as ``ElsewhereError``: call ``wait()``
        first (outside a case's ``under_test`` region: reading the answer is the harness's
        job), then this inside it."""
        answer = self.wait()
        if not answer["ok"]:
            raise ElsewhereError("%s: %s\n[raised by hub.load(handle)(x) in the other "
                                 "process]\n%s" % (answer["type"], answer["message"],
                                                   answer["traceback"]))
        return self._y
