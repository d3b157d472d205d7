"""``nox -s bench``: speed ratios measured in one run, on real environments.

1. provisioning: a fresh install (uv, its cache warm) vs reusing the install;
2. one consume stage (every model of two producers): pytest-xdist ``-n 2`` vs ``-n 0``;
3. the consume stage of two env x mode: one after another with ``-n 2`` each vs both at
   once with ``-n 1`` each (the default: ``settings.parallel: 2, workers: 1``);
4. the hub server (``harness.hubserver``) on a ~200 MB model: the first compressed GET
   (archive build + transfer), then downloads of the built archive from the hub server vs
   the same file from ``python -m http.server`` on loopback (``--only server`` runs it alone);
5. building the report (``write_reports``: summary.json, compat.md, index.html) from the
   records of a real run (``--report-run``, default the last run) and from a synthetic
   100 env x 200 case record set (``--only report`` runs it alone);
6. a finished run's wall time against its floor (``--floor-run RUN_DIR``, e.g. the
   versions matrix's run; ``--only floor`` runs it alone): the sum of its cases' times plus
   one TensorFlow import (measured now, in each env) per stage process, over the cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

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
    p.add_argument("--only", choices=("matrix", "server", "report", "floor"),
                   help="run only the matrix parts (1-3), the hub server part (4) or the "
                        "report part (5)")
    p.add_argument("--report-run", metavar="RUN_DIR",
                   help="run whose records part 5 reports on (default: reports/<latest run>)")
    p.add_argument("--server-mb", type=int, default=200, metavar="MB",
                   help="size of the hub server part's model (default: 200)")
    p.add_argument("--floor-run", metavar="RUN_DIR",
                   help="finished run whose wall time part 6 compares with its floor")
    args = p.parse_args(argv)
    if args.only == "floor" or args.floor_run:
        if not args.floor_run:
            p.error("--only floor needs --floor-run RUN_DIR (e.g. reports/<versions run>)")
        _bench_floor(args.floor_run)
        if args.only == "floor":
            return 0
    if args.only in (None, "matrix"):
        _bench_matrix(args)
    if args.only in (None, "server"):
        _bench_server(args.server_mb)
    if args.only in (None, "report"):
        _bench_report(args)
    return 0


def _bench_matrix(args: argparse.Namespace) -> None:
    """Parts 1-3: provisioning reuse, xdist workers, parallel stages."""
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


def _bench_floor(run_dir: str) -> None:
    """Part 6: wall time vs (sum of case times + one TF import per stage process) / cores."""
    import glob
    import json
    with open(os.path.join(run_dir, "summary.json")) as fh:
        summary = json.load(fh)
    with open(os.path.join(run_dir, "run.json")) as fh:
        matrix = config.load(json.load(fh)["matrix"])
    with open(os.path.join(run_dir, "results.jsonl")) as fh:
        case_s = sum(json.loads(line).get("duration_s") or 0 for line in fh if line.strip())
    stages: dict[str, int] = {}
    for plan in glob.glob(os.path.join(run_dir, "plans", "*.json")):
        with open(plan) as fh:
            env_id = json.load(fh)["env"]["id"]
        stages[env_id] = stages.get(env_id, 0) + 1
    backend = VenvBackend(matrix.settings.envs_dir, "", "", log=lambda m: None)
    import_s = 0.0
    for env_id, n in stages.items():
        env = matrix.env(env_id)
        python = os.path.join(backend.location(env), "bin", "python")
        if not os.path.exists(python):
            continue  # never provisioned (its cases are env_error records)
        t0 = time.monotonic()
        subprocess.run([python, "-c", "import tensorflow"], capture_output=True,
                       env={**os.environ, **dict(env.env_vars), "TF_CPP_MIN_LOG_LEVEL": "3"})
        import_s += n * (time.monotonic() - t0)
    cores = os.cpu_count() or 1
    floor = (case_s + import_s) / cores
    wall = summary["run"].get("duration_s") or 0
    print(f"floor of {os.path.basename(os.path.normpath(run_dir))}: cases {case_s:.0f}s + "
          f"{sum(stages.values())} TF imports {import_s:.0f}s over {cores} cores = "
          f"{floor:.0f}s; wall {wall:.0f}s -> {wall / floor:.2f}x the floor")


def _make_big_model(root: str, size_mb: int) -> int:
    """A model root of ~size_mb MB of random bytes (incompressible, like trained weights)."""
    os.makedirs(os.path.join(root, "variables"))
    with open(os.path.join(root, "saved_model.pb"), "wb") as fh:
        fh.write(os.urandom(64 * 1024))
    with open(os.path.join(root, "variables", "variables.index"), "wb") as fh:
        fh.write(os.urandom(4 * 1024))
    with open(os.path.join(root, "variables", "variables.data-00000-of-00001"), "wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1 << 20))
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(root) for n in ns)


def _download(url: str) -> tuple[int, float]:
    """(bytes, seconds) of one GET read with urllib in 1 MiB chunks."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    t0 = time.monotonic()
    got = 0
    with opener.open(url, timeout=600) as resp:
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    return got, time.monotonic() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_server(directory: str) -> tuple[subprocess.Popen, str]:
    """``python -m http.server`` on loopback serving ``directory``, once it answers."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                             "--directory", directory, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("python -m http.server did not start")
            time.sleep(0.05)


def _rates(label: str, url: str, runs: int) -> float:
    """Download ``url`` ``runs`` times; print each MB/s; return the median MB/s."""
    rates = []
    for i in range(runs):
        size, seconds = _download(url)
        rates.append(size / 1e6 / seconds)
        print(f"  {label} download {i + 1}: {size / 1e6:.0f} MB in {seconds:.2f}s "
              f"= {rates[-1]:.0f} MB/s")
    return statistics.median(rates)


def _bench_server(size_mb: int, runs: int = 3) -> None:
    """Part 4: the hub server's archive build and download throughput vs http.server."""
    from .hubserver import HubServer
    tmp = tempfile.mkdtemp(prefix="tfhub-bench-server-")
    try:
        model = os.path.join(tmp, "model")
        total = _make_big_model(model, size_mb)
        print(f"hub server: model root of {total / 1e6:.0f} MB (random bytes)")
        with HubServer(dirs={"big": model}, cache_dir=os.path.join(tmp, "cache")) as srv:
            url = srv.url + "/big?tf-hub-format=compressed"
            size, seconds = _download(url)
            print(f"  first compressed GET (archive build + transfer): {size / 1e6:.0f} MB in "
                  f"{seconds:.2f}s = {size / 1e6 / seconds:.0f} MB/s")
            hub_rate = _rates("hub server", url, runs)
            archives = srv.archives.directory if srv.archives else ""
            (name,) = os.listdir(archives)
            proc, base = _http_server(archives)
            try:
                plain_rate = _rates("python -m http.server", f"{base}/{name}", runs)
            finally:
                proc.terminate()
                proc.wait(30)
        print(f"hub server vs python -m http.server (median of {runs}, same tarball): "
              f"{hub_rate:.0f} vs {plain_rate:.0f} MB/s -> {hub_rate / plain_rate:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



def synthetic_records(envs: int = 100, cases: int = 200, seed: int = 7) -> list[dict]:
    """``envs`` env x mode x ``cases`` records shaped like a real run's (outcomes mixed)."""
    import random

    from .runtime.cases import Case
    from .runtime.records import make_record
    rng = random.Random(seed)
    formats = ("tf1_hub", "saved_model", "keras_saved_model")
    operations = ("load", "fine_tune", "create")
    out = []
    for e in range(envs):
        env_id, mode = f"env{e:03d}", ("compat", "tf2")[e % 2]
        for i in range(cases):
            fmt, op = formats[i % 3], operations[(i // 3) % 3]
            producer = f"env{(e + i) % envs:03d}"
            case = Case("create" if op == "create" else "consume", env_id, mode, fmt, op,
                        f"api{i % 17}", "mlp", env_id if op == "create" else producer, mode)
            outcome = rng.choice(("passed", "passed", "passed", "error", "failed"))
            out.append(make_record(
                case, {"tensorflow": "2.21.0", "tensorflow_hub": "0.16.1", "python": "3.12.0",
                       "keras": "tf_keras 2.21.0", "device": "cpu", "backend": "venv"},
                run_id="synthetic", outcome=outcome, duration_s=0.1,
                error_type=None if outcome == "passed" else "ValueError",
                message=None if outcome == "passed" else f"synthetic failure {i % 23}",
                repro=f"nox -s matrix -- --case {case.case_id}"))
    return out


def _time_report(label: str, records: list[dict], matrix: config.Matrix) -> None:
    from .report import write_reports
    tmp = tempfile.mkdtemp(prefix="tfhub-bench-report-")
    try:
        run_dir = os.path.join(tmp, "reports", "bench")
        os.makedirs(run_dir)
        envs = sorted({r["env_id"] for r in records})
        started = time.monotonic()
        write_reports(run_dir, records, matrix, {"run_id": "bench"},
                      {e: {"versions": {}} for e in envs})
        seconds = time.monotonic() - started
        sizes = {n: os.path.getsize(os.path.join(run_dir, n)) for n in os.listdir(run_dir)
                 if os.path.isfile(os.path.join(run_dir, n))}
        print(f"report of {label}: {len(records)} records, {len(envs)} envs -> "
              f"{seconds:.2f}s; " + ", ".join(f"{n} {v / 1e6:.2f} MB" for n, v in
                                                sorted(sizes.items())))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_report(args: argparse.Namespace) -> None:
    """Part 5: building the report from a real run's records and from 100 envs x 200 cases."""
    import json

    from .hubserver import latest_store
    matrix = config.load(args.matrix)
    run_dir = args.report_run or os.path.dirname(latest_store(matrix.settings.reports_dir))
    path = os.path.join(run_dir, "results.jsonl")
    if os.path.exists(path):
        with open(path) as fh:
            _time_report(os.path.basename(run_dir), [json.loads(ln) for ln in fh if ln.strip()],
                         matrix)
    else:
        print(f"report: no {path}; run the matrix first (or pass --report-run)")
    _time_report("a synthetic 100 env x 200 case set", synthetic_records(), matrix)


if __name__ == "__main__":
    raise SystemExit(main())
