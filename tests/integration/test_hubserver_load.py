"""``harness serve`` as a real process under load, and how it stops.

A burst of thousands of slow connections (each has sent part of its request head) released
at once, while a prober times ``/_harness/health`` on fresh connections and a sampler reads
the server's thread count and RSS from /proc; connections that never finish their head; and
SIGTERM / SIGHUP stopping the server cleanly.  Loopback only; each test runs in seconds.
"""
import contextlib
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

from .runs import ROOT, default_signals, stop

pytestmark = pytest.mark.integration

BURST = 2500  # slow connections (fewer when the file-descriptor limit cannot fit them)
WORKERS, MAX_CONNECTIONS = 32, 256  # harness serve's defaults
ARCHIVE = "/m?tf-hub-format=compressed"


@contextlib.contextmanager
def serve(tmp_path, *args, env=None):
    """(process, port) of ``harness serve --dir m=<a model of 41 files> ARGS``; the process is
    killed and its pipes closed on the way out, whatever happened."""
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"\x08\x01fake saved model")
    for i in range(40):
        (model / "variables" / f"part-{i:03d}").write_bytes(os.urandom(2048))
    tmp = tmp_path / "tmp"  # its temporary cache directory: inside tmp_path whatever happens
    tmp.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "--dir", f"m={model}",
                             *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_signals,
                            env={**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(tmp),
                                 **(env or {})})
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving 1 models at http://127.0.0.1:"), (
            first + proc.stderr.read() if proc.poll() is not None else first)
        yield proc, int(first.split("http://127.0.0.1:")[1].split("/")[0])
    finally:
        stop(proc)


def get(port, target, timeout=10.0, method="GET"):
    """(status, raw answer) of one request on a fresh connection (``Connection: close``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return int(data.split(b" ", 2)[1]), data
            data += chunk


def proc_status(pid):
    """(threads, RSS in MB) of a process."""
    with open(f"/proc/{pid}/status") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


# The prober: its own process, so that what it measures is the server (not this process's
# GIL, busy reading the burst's answers). A health check on a fresh connection every 50 ms,
# one line "latency status" each, until its stdin closes.
PROBER = r"""
import select, socket, sys, time
port = int(sys.argv[1])
while True:
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(("GET /_harness/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          "Connection: close\r\n\r\n" % port).encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        status = data.split(b" ", 2)[1].decode() if data else "empty"
    except OSError as exc:
        status = type(exc).__name__
    print(time.monotonic() - started, status, flush=True)
    if select.select([sys.stdin], [], [], 0.05)[0]:
        break
"""


@contextlib.contextmanager
def watching(proc, port):
    """While inside: a prober process (health on a fresh connection every 50 ms) and a
    sampler (the server's threads and RSS every 50 ms). Yields (probes [(latency, status)],
    samples [(threads, RSS MB)]), complete once the block is left."""
    probes, samples, stop = [], [], threading.Event()

    def sampler():
        while not stop.is_set():
            samples.append(proc_status(proc.pid))
            stop.wait(0.05)

    prober = subprocess.Popen([sys.executable, "-c", PROBER, str(port)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    thread = threading.Thread(target=sampler)
    thread.start()
    try:
        time.sleep(0.3)  # the prober is probing
        yield probes, samples
    finally:
        stop.set()
        thread.join(30)
        try:
            out, _ = prober.communicate(timeout=30)  # (closes its stdin: it stops)
        except subprocess.TimeoutExpired:
            prober.kill()
            out, _ = prober.communicate()
        for line in out.splitlines():
            latency, status = line.split()
            probes.append((float(latency), int(status) if status.isdigit() else status))


@contextlib.contextmanager
def open_files(wanted):
    """The soft RLIMIT_NOFILE raised to ``wanted`` where the hard limit allows; yields how
    many connections this process can hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield min(wanted, resource.getrlimit(resource.RLIMIT_NOFILE)[0]) - 200
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def slow_connections(port, n, head):
    """``n`` connections that have each sent ``head`` (a request head without its end)."""
    socks = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(sock)
        with contextlib.suppress(OSError):  # one the server has answered 503 and closed
            sock.sendall(head.replace(b"{i}", str(i).encode()))
        sock.setblocking(False)
    return socks


def read_answers(socks, limit):
    """{socket: (status or "reset" / "eof", seconds)} of each socket's whole answer (read
    as the server sends it: Content-Length, or until it closes), within ``limit`` s."""
    sel, bufs, found = selectors.DefaultSelector(), {}, {}
    for sock in socks:
        sel.register(sock, selectors.EVENT_READ)
        bufs[sock] = b""
    started = time.monotonic()
    while bufs and time.monotonic() - started < limit:
        for key, _ in sel.select(0.5):
            sock = key.fileobj
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                chunk = None
            bufs[sock] += chunk or b""
            head, sep, body = bufs[sock].partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            if not chunk or (sep and length is not None and len(body) >= length):
                status = head.split(b" ", 2)[1].decode() if sep else (
                    "eof" if chunk == b"" else "reset")
                retry = b"\r\nretry-after: 1\r\n" in head.lower() + b"\r\n"
                found[sock] = (status, time.monotonic() - started, retry)
                sel.unregister(sock)
                del bufs[sock]
    sel.close()
    return found


@pytest.mark.parametrize("max_connections", [MAX_CONNECTIONS, None], ids=[
    "capped", "every-connection-in"])
def test_health_stays_responsive_in_a_burst_of_slow_connections(tmp_path, max_connections):
    """BURST connections hold part of a request head, then all finish it at once. With the
    cap (the default 256) the others are answered 503 at once; without one ("every
    connection in": the cap above BURST) thousands of requests queue for 32 workers. Either
    way every health check is answered in under 1 s, and threads and memory stay flat."""
    with open_files(BURST + 400) as room:
        burst = min(BURST, room)
        cap = max_connections or burst + 100
        with serve(tmp_path, "--instrument", "--max-connections", str(cap),
                   "--header-timeout", "30") as (proc, port):
            assert get(port, ARCHIVE)[0] == 200  # the archive is built once, before
            idle_threads, idle_rss = proc_status(proc.pid)
            assert idle_threads == WORKERS + 2  # main, the selector thread, the pool
            socks = []
            try:
                with watching(proc, port) as (probes, samples):
                    socks = slow_connections(port, burst, f"GET {ARCHIVE}&c={{i}} HTTP/1.1\r\n"
                                             f"Host: 127.0.0.1:{port}\r\n".encode())
                    time.sleep(2)  # they hold
                    for sock in socks:  # released at once
                        with contextlib.suppress(OSError):
                            sock.send(b"\r\n")
                    answers = read_answers(socks, limit=40)
                    time.sleep(0.5)
            finally:
                for sock in socks:
                    sock.close()
            assert get(port, ARCHIVE)[0] == 200  # and it serves on
    latencies = [latency for latency, _ in probes]
    print(f"burst {burst} cap {cap}: health max {max(latencies):.3f}s median "
          f"{statistics.median(latencies):.4f}s over {len(probes)} probes; threads max "
          f"{max(t for t, _ in samples)} RSS max {max(r for _, r in samples):.1f} MB (idle "
          f"{idle_rss:.1f}); answers in {max(s for _, s, _ in answers.values()):.2f}s")
    assert len(probes) >= 20
    # never queued behind the burst (its answers take ~4 s without the cap): every health
    # check well under that, nearly all at once; 1 s was seen exceeded once (1.002 s, one
    # probe of 134) by a scheduler stall on a 2-core CI machine
    assert all(status == 200 and latency < 2 for latency, status in probes), probes
    assert sorted(latencies)[int(0.95 * len(latencies))] < 0.5, probes
    assert max(t for t, _ in samples) <= WORKERS + 2
    assert max(r for _, r in samples) < idle_rss + 64
    assert len(answers) == burst  # every connection got its answer (or its refusal)
    statuses = [status for status, _, _ in answers.values()]
    ok, busy = statuses.count("200"), statuses.count("503")
    if max_connections is None:
        assert ok == burst
    else:
        assert MAX_CONNECTIONS - 20 <= ok <= MAX_CONNECTIONS  # (a probe may hold a place)
        assert busy >= 0.95 * (burst - MAX_CONNECTIONS)  # the rest: refused at once
        assert all(retry for status, _, retry in answers.values() if status == "503")
        assert ok + busy + statuses.count("reset") + statuses.count("eof") == burst


def test_heads_that_never_arrive_are_timed_out(tmp_path):
    """300 connections that never finish their head each get a 408 after --header-timeout;
    health is answered meanwhile."""
    with serve(tmp_path, "--instrument", "--header-timeout", "1",
               "--max-connections", "400") as (proc, port):
        socks = slow_connections(port, 200, b"GET /m HTTP/1.1\r\nHost: x\r\n")
        socks += slow_connections(port, 100, b"")  # connected, never a byte
        try:
            with watching(proc, port) as (probes, samples):
                answers = read_answers(socks, limit=10)
        finally:
            for sock in socks:
                sock.close()
    assert sorted({status for status, _, _ in answers.values()}) == ["408"]
    assert len(answers) == 300 and max(s for _, s, _ in answers.values()) < 3
    assert all(status == 200 and latency < 1 for latency, status in probes), probes
    assert max(t for t, _ in samples) <= WORKERS + 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_stops_harness_serve_cleanly(tmp_path, signum):
    """A mirror (no --instrument, its own temporary cache): SIGTERM or SIGHUP stops it as
    Ctrl-C does — exit 0, open connections closed, its temporary directory removed."""
    tmp = tmp_path / "tmp"
    with serve(tmp_path) as (proc, port):
        assert get(port, ARCHIVE)[0] == 200
        assert [p.name.startswith("tfhub-compat-hubserver-") for p in tmp.iterdir()] == [True]
        status, answer = get(port, "/_harness/health")  # a mirror hides the instrumentation
        assert status == 404
        status, answer = get(port, "/m?tf-hub-format=uncompressed")
        assert status == 303 and str(tmp_path).encode() not in answer
        assert b"\r\nlocation:" not in answer.lower()
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        partial = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            partial.sendall(b"GET /m HTTP/1.1\r\n")
            time.sleep(0.2)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=15)
            for sock in (idle, partial):
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1) == b""  # closed by the server
        finally:
            idle.close()
            partial.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err.endswith(f"stopped ({signal.Signals(signum).name})\n")
    assert list(tmp.iterdir()) == []  # its temporary cache directory is gone
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
