"""``nox -s bench``: speed ratios measured in one run, on real environments.

1. provisioning: a fresh install (uv, its cache warm) vs reusing the install;
2. one consume stage (every model of two producers): pytest-xdist ``-n 2`` vs ``-n 0``;
3. the consume stage of two env x mode: one after another with ``-n 2`` each vs both at
   once with ``-n 1`` each (the default: ``settings.parallel: 2, workers: 1``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time

from . import config
from .backends import Provisioned, ProvisionError
from .backends.venv import VenvBackend
from .expand import expand
from .pipeline import Run, Selection, stage
from .stages import RunPaths, run_stage
from .wheel import build_wheel


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="harness.bench", description=__doc__.splitlines()[0])
    p.add_argument("--matrix", default="matrix.yaml")
    p.add_argument("--env", default="tf221-tfkeras", help="env whose tf2 mode is measured")
    p.add_argument("--producer", default="tf115", help="second producer env (first mode)")
    args = p.parse_args(argv)
    matrix = config.load(args.matrix)
    env = matrix.env(args.env)
    tmp = tempfile.mkdtemp(prefix="tfhub-bench-")
    try:
        wheel, wid = build_wheel(os.path.join(matrix.settings.envs_dir, ".wheels"))
        quiet = VenvBackend(matrix.settings.envs_dir, wheel, wid, log=lambda m: None)
        quiet.provision(env)  # make sure the shared install exists before timing reuse
        t0 = time.monotonic()
        reused = quiet.provision(env)
        reuse_s = time.monotonic() - t0
        fresh = VenvBackend(os.path.join(tmp, "envs"), wheel, wid, log=lambda m: None)
        t0 = time.monotonic()
        fresh.provision(env)
        fresh_s = time.monotonic() - t0
        print(f"provision {env.id}: fresh {fresh_s:.1f}s, reused {reuse_s:.2f}s "
              f"-> reuse is {fresh_s / reuse_s:.0f}x faster")

        producer = matrix.env(args.producer)
        provs: dict[str, Provisioned | ProvisionError] = {
            env.id: reused, producer.id: quiet.provision(producer)}
        paths = RunPaths(os.path.join(tmp, "run"))
        consumer = expand(matrix, (env.id,), ("tf2",))[0]
        pair = [consumer, expand(matrix, (producer.id,))[0]]
        for r in pair:
            run_stage(matrix, r, "create", provs[r.env.id], paths, "bench")
        timings = {}
        for workers in (0, 2):
            m = dataclasses.replace(matrix, settings=dataclasses.replace(
                matrix.settings, workers=workers))
            shutil.rmtree(paths.records, ignore_errors=True)
            res = run_stage(m, consumer, "consume", reused, paths, "bench")
            timings[workers] = res.seconds
            print(f"consume {consumer.key} -n {workers}: {res.seconds:.1f}s "
                  f"({sum(res.counts.values())} cases: {dict(res.counts)})")
        print(f"xdist -n 2 vs -n 0 on {os.cpu_count()} cores: "
              f"{timings[0] / timings[2]:.2f}x faster")

        sched = {}
        for parallel, workers in ((1, 2), (2, 1)):
            m = dataclasses.replace(matrix, settings=dataclasses.replace(
                matrix.settings, workers=workers, parallel=parallel))
            shutil.rmtree(paths.records, ignore_errors=True)
            run = Run(m, Selection(pair, pair), "bench", paths, provisioned=provs)
            t0 = time.monotonic()
            stage(run, "consume", pair, None)
            sched[parallel] = time.monotonic() - t0
            print(f"consume {' + '.join(r.key for r in pair)}, parallel {parallel} x -n "
                  f"{workers}: {sched[parallel]:.1f}s")
        print(f"parallel 2 x -n 1 vs parallel 1 x -n 2: {sched[1] / sched[2]:.2f}x faster")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
