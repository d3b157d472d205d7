"""Models by handle: the documents' ``hub.load(handle)`` with a URL (pytest11 plugin).

Every model a producer made is also served by the harness's own hub server
(``harness.hubserver``, started by the host; its URL is the plan's ``hub_url``) at
``<hub_url>/<producer env>/<producer mode>/<format>/<model>``.  This plugin adds:

- ``load`` / ``fine_tune`` variants ending in ``-url``: the documents' own calls
  (``hub.Module``, ``hub.load``, ``hub.KerasLayer``, their ``trainable`` forms) run
  unchanged on that URL, each case with a fresh ``TFHUB_CACHE_DIR``: the outputs
  must equal the producer's goldens and the server must have sent the model once;
- ``download`` variants: the hosting protocol itself — the cache (a second process
  downloads nothing; the cache directory is ``sha1(handle)`` under
  ``TFHUB_CACHE_DIR``), every ``TFHUB_MODEL_LOAD_FORMAT`` value, redirects, and the
  faults a download can meet (the server injects them), each recorded with the
  library's real error.

Every handle carries a unique ``tfhub-compat-case`` query parameter (the
protocol keeps a handle's query), so the server's request log tells exactly what
this case downloaded.

In-environment code: standard library + numpy, Python 3.7 syntax.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from urllib.parse import urlencode
from urllib.request import urlopen

from ..cases import DOWNLOAD, MODES, URL_SUFFIX, Variant
from . import _reusable, keras_saved_model, saved_model, tf1_hub
from ._elsewhere import Pending

EVERY = MODES
FORMATS = (tf1_hub.FORMAT, saved_model.FORMAT, keras_saved_model.FORMAT)
TOKEN = "tfhub-compat-case"
LOAD_FORMATS = ("COMPRESSED", "UNCOMPRESSED", "AUTO")
REDIRECTS = (301, 302, 303, 307, 308)
# faults the server injects once per token; the retry must then work
SERVER_FAULTS = ("nested", "not-tar", "404", "truncated", "symlink")
SLOW_S = 3.0  # the concurrent case's download is held this long, so both loads overlap
LOCK_WAIT_S = 60.0  # how long the concurrent case waits for the other process's lock

# the documents' calls, run on a URL: {format: [(operation, api of the path variant)]}
BY_URL = {
    tf1_hub.FORMAT: [("load", "hub.Module"), ("load", "hub.load-signatures"),
                     ("load", "hub.KerasLayer-signature"),
                     ("fine_tune", "hub.Module-trainable"),
                     ("fine_tune", "hub.KerasLayer-trainable")],
    saved_model.FORMAT: [("load", "hub.load"), ("load", "hub.KerasLayer"),
                         ("fine_tune", "hub.KerasLayer-trainable-fit"),
                         ("fine_tune", "hub.load-GradientTape")],
}
BY_URL[keras_saved_model.FORMAT] = BY_URL[saved_model.FORMAT]


# ---- the server ------------------------------------------------------------------------

def model_url(ctx, prefix="", **query):
    """This case's model on the hub server, with a unique token (and ``query``) added."""
    case = ctx.case
    token = uuid.uuid4().hex[:16]
    params = [(TOKEN, token)] + sorted(query.items())
    path = "/".join((case.producer_env, case.producer_mode, case.format, case.model))
    return "%s/%s%s?%s" % (ctx.hub_url, prefix, path, urlencode(params)), token


def requests_for(ctx, token):
    """The server's log entries of requests that carried ``token``."""
    with contextlib.closing(urlopen("%s/_harness/requests?%s" % (
            ctx.hub_url, urlencode([("contains", token)])), timeout=30)) as response:
        return json.loads(response.read().decode("utf-8"))["requests"]


def downloads(ctx, token):
    """Requests for the model's archive (``tf-hub-format=compressed``) answered 200."""
    return [r for r in requests_for(ctx, token)
            if r["format"] == "compressed" and r["status"] == 200]


@contextlib.contextmanager
def env_var(name, value):
    """``os.environ[name] = value`` for the block (the old value comes back after)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def fresh_cache():
    """A new, empty ``TFHUB_CACHE_DIR`` for the block, removed after."""
    cache = tempfile.mkdtemp(prefix="tfhub-compat-cache-")
    try:
        with env_var("TFHUB_CACHE_DIR", cache):
            yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def cache_dir_of(cache, handle):
    """Where tensorflow_hub caches ``handle``: ``<TFHUB_CACHE_DIR>/sha1(handle)``."""
    return os.path.join(cache, hashlib.sha1(handle.encode("utf8")).hexdigest())


def reference_load(ctx):
    """The format's plainest documented load, compared with the goldens."""
    if ctx.case.format == tf1_hub.FORMAT:
        return tf1_hub.load_signatures(ctx)
    return _reusable.hub_load(ctx)


def _elsewhere_kwargs(ctx):
    if ctx.case.format == tf1_hub.FORMAT:
        return {"signature": "default", "output_key": "default"}
    return {}


def _leftovers(cache):
    """Lock files and temporary download dirs a failed download left in the cache."""
    return sorted(n for n in os.listdir(cache) if n.endswith((".lock", ".tmp")))


def _describe(exc):
    """``Type: first line of the message``."""
    lines = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, lines[0] if lines else repr(exc))


# ---- the documents' calls on a URL -----------------------------------------------------

def by_url(inner):
    """Run the path variant's body on the model's URL with a fresh cache; one download."""
    def run(ctx):
        with fresh_cache():
            ctx.url, token = model_url(ctx)
            inner(ctx)
            got = downloads(ctx, token)
        ctx.expect(len(got) == 1, "the model was downloaded %d times, expected once"
                   % len(got))
        return ctx.result(downloads=1, downloaded_bytes=got[0]["bytes"])
    run.__doc__ = "%s, on the model's URL" % ((inner.__doc__ or "").strip().splitlines()[0],)
    return run


def _path_variants():
    found = {}
    for module in (tf1_hub, saved_model, keras_saved_model):
        for v in module.pytest_tfhub_compat_variants():
            found[(v.format, v.operation, v.api)] = v
    return found


def url_variants():
    """The documents' load / fine-tune calls of every format, on the base model's URL."""
    path = _path_variants()
    found = []
    for fmt in FORMATS:
        for operation, api in BY_URL[fmt]:
            v = path[(fmt, operation, api)]
            found.append(Variant(fmt, operation, api + URL_SUFFIX, v.modes, by_url(v.run),
                                 v.documented_call.replace("handle", "url"),
                                 base_only=True))
    return found


# ---- download: cache, TFHUB_MODEL_LOAD_FORMAT, redirects -----------------------------

def cache_second_process(ctx):
    """``TFHUB_CACHE_DIR``: the first load downloads once into ``sha1(handle)``; a second
    process loads the same handle from the cache and downloads nothing."""
    with fresh_cache() as cache:
        ctx.url, token = model_url(ctx)
        reference_load(ctx)
        first = len(downloads(ctx, token))
        ctx.expect(first == 1, "the first load downloaded %d times, expected once" % first)
        expected = cache_dir_of(cache, ctx.url)
        ctx.expect(os.path.isdir(expected) and os.listdir(expected),
                   "no model in %s (sha1 of the handle under TFHUB_CACHE_DIR); the cache "
                   "holds %s" % (expected, sorted(os.listdir(cache))))
        with ctx.under_test():
            resolve = getattr(ctx.hub, "resolve", None)
            resolved = resolve(ctx.url) if resolve is not None else None
        ctx.expect(resolved in (None, expected), "hub.resolve(handle) = %s, expected %s"
                   % (resolved, expected))
        pending = Pending(ctx.rt.mode, ctx.url, ctx.golden("x"), {"TFHUB_CACHE_DIR": cache},
                          **_elsewhere_kwargs(ctx))
        pending.wait()
        with ctx.under_test():  # hub.load(url)(x) in the other process
            other = pending.result()
        ctx.compare(other, "y", "loaded from the cache by another process")
        total = len(downloads(ctx, token))
        ctx.expect(total == 1, "the second process downloaded the model again (%d downloads)"
                   % total)
        descriptor = os.path.exists(expected + ".descriptor.txt")
    return ctx.result(cache_dir=os.path.basename(expected), downloads=total,
                      hub_resolve=resolved is not None, descriptor_file=descriptor)


def _defines_load_format(ctx):
    """Whether this tensorflow_hub knows TFHUB_MODEL_LOAD_FORMAT (hub >= 0.10)."""
    with ctx.under_test():
        ctx.hub  # noqa: B018  (its import error, where it has one, is the answer)
        from tensorflow_hub import resolver
    return hasattr(resolver, "ModelLoadFormat")


def load_format(value):
    """``TFHUB_MODEL_LOAD_FORMAT=value``: the request the library sends must be the one it
    defines (COMPRESSED and AUTO download the archive; UNCOMPRESSED asks for the model's
    location and reads it in place — a GCS path, which a local server cannot give)."""
    def run(ctx):
        defined = _defines_load_format(ctx)
        expected = "uncompressed" if defined and value == "UNCOMPRESSED" else "compressed"
        raised = None
        with fresh_cache(), env_var("TFHUB_MODEL_LOAD_FORMAT", value):
            ctx.url, token = model_url(ctx)
            try:
                reference_load(ctx)
            except Exception as exc:  # judged below, then re-raised: it is the result
                raised = exc
            sent = [r["format"] for r in requests_for(ctx, token)]
        ctx.details.update(requests=sent, library_defines_load_format=defined)
        ctx.expect(sent[:1] == [expected], "with TFHUB_MODEL_LOAD_FORMAT=%s the library sent "
                   "tf-hub-format=%s, expected %s%s" % (value, sent, expected, "; it raised %s"
                                                        % _describe(raised) if raised else ""))
        if raised is not None:
            raise raised
        return ctx.result()
    run.__doc__ = load_format.__doc__.replace("value", value, 1)
    return run


def redirect(code):
    """The handle answers ``code`` to the model's URL: the library must follow it."""
    def run(ctx):
        with fresh_cache():
            ctx.url, token = model_url(ctx, prefix="_redirect/%d/" % code)
            reference_load(ctx)
            statuses = [r["status"] for r in requests_for(ctx, token)]
        ctx.expect(statuses == [code, 200], "responses %s, expected [%d, 200]"
                   % (statuses, code))
        return ctx.result(responses=statuses)
    run.__doc__ = "HTTP %d redirect from the handle to the model: followed" % code
    return run


# ---- download: faults ------------------------------------------------------------------

def server_fault(kind):
    """The server answers the first download with fault ``kind``: the library must report it
    (or survive it), and a retry once the server is fixed must load the model — a failed
    download must not leave a broken model, lock or temporary directory in the cache."""
    def run(ctx):
        with fresh_cache() as cache:
            ctx.url, token = model_url(ctx, **{"fault": kind, "fault-token": uuid.uuid4().hex})
            first = None
            try:
                reference_load(ctx)
            except Exception as exc:  # the fault's report: kept in the record's details
                first = _describe(exc)
            left = _leftovers(cache)
            ctx.details.update(first_attempt=first or "loaded (the library survived it)",
                               leftovers=left)
            try:
                reference_load(ctx)
            except Exception as exc:
                kept = cache_dir_of(cache, ctx.url)
                if not (os.path.isdir(kept) and os.listdir(kept)):
                    raise  # nothing cached: the library cannot load this model at all
                ctx.expect(False, "after a %r download (%s), the retry with the server fixed "
                           "still fails: %s; the cache keeps the broken download in %s"
                           % (kind, first, _describe(exc), kept))
            ctx.expect(not left, "the failed download left %s in TFHUB_CACHE_DIR" % left)
            sent = len(requests_for(ctx, token))
        return ctx.result(requests=sent)
    run.__doc__ = server_fault.__doc__.replace("kind", kind, 1)
    return run


def empty_cache_dir(ctx):
    """The handle's cache directory exists but is empty (a crashed download, a cleanup):
    the library must download the model again."""
    with fresh_cache() as cache:
        ctx.url, token = model_url(ctx)
        os.makedirs(cache_dir_of(cache, ctx.url))
        reference_load(ctx)
        got = len(downloads(ctx, token))
    ctx.expect(got == 1, "the model was downloaded %d times, expected once" % got)
    return ctx.result(downloads=got)


def _wait_for_lock(cache, other, timeout=LOCK_WAIT_S):
    """Wait until the other process holds the cache's lock (``<sha1>.lock``): True; False
    when it answered first or the wait timed out (the checks that follow say why)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(n.endswith(".lock") for n in os.listdir(cache)):
            return True
        if other.answered(0.02):
            return False
    return False


def two_processes(ctx):
    """Two processes load the same new handle at once: the other one starts, and when it
    holds the cache's lock (its download held by the server for a few seconds) this one
    loads too. The lock must make this one wait and use the other's download: exactly one.

    Not tested: two processes that take the lock in the same instant. tensorflow_hub's
    lock is a rename after an exists-check, not atomic, so both may then download (seen
    once in about 180 runs when the two loads were started together)."""
    with fresh_cache() as cache:
        ctx.url, token = model_url(ctx, **{"fault": "slow", "fault-delay": "%g" % SLOW_S,
                                           "fault-token": uuid.uuid4().hex})
        other = Pending(ctx.rt.mode, ctx.url, ctx.golden("x"), {"TFHUB_CACHE_DIR": cache},
                        **_elsewhere_kwargs(ctx))
        try:
            locked = _wait_for_lock(cache, other)
            started = time.time()
            reference_load(ctx)
            finished = time.time()
        finally:
            other.wait()
        with ctx.under_test():  # hub.load(url)(x) in the other process
            theirs = other.result()
        ctx.compare(theirs, "y", "loaded by the other process")
        got = len(downloads(ctx, token))
    overlap = min(finished, other.finished) - max(started, other.started)
    ctx.expect(overlap > 0, "the two loads did not overlap (%.2fs): nothing was tested"
               % overlap)
    ctx.expect(got == 1, "%d downloads for two concurrent loads, expected one" % got)
    return ctx.result(downloads=got, overlap_s=round(overlap, 2), lock_seen=locked,
                      this_process_s=round(finished - started, 2),
                      other_process_s=round(other.finished - other.started, 2))


def download_variants():
    """The hosting-protocol checks, for each format, on a base model its own env made."""
    checks = [("cache-TFHUB_CACHE_DIR", cache_second_process,
               "TFHUB_CACHE_DIR=dir; hub.load(url) in two processes")]
    checks += [("TFHUB_MODEL_LOAD_FORMAT-" + v, load_format(v),
                "TFHUB_MODEL_LOAD_FORMAT=%s; hub.load(url)" % v) for v in LOAD_FORMATS]
    checks += [("redirect-%d" % c, redirect(c), "hub.load(url)  # HTTP %d" % c)
               for c in REDIRECTS]
    checks += [("fault-" + k, server_fault(k), "hub.load(url)  # server fault: %s" % k)
               for k in SERVER_FAULTS]
    checks += [("fault-empty-cache-dir", empty_cache_dir,
                "hub.load(url)  # empty sha1(url) dir in TFHUB_CACHE_DIR"),
               ("two-processes-one-download", two_processes,
                "hub.load(url) in two processes at once")]
    return [Variant(fmt, DOWNLOAD, api, EVERY, run, call, base_only=True, producers="one")
            for fmt in FORMATS for api, run, call in checks]


def pytest_tfhub_compat_variants():
    """Handle (URL) variants (registered through the pytest11 entry point)."""
    return url_variants() + download_variants()


__all__ = ["pytest_tfhub_compat_variants"]
