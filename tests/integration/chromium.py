"""Debian's headless Chromium (MACHINE.md), for the report page's browser tests.

``.ci/run`` installs it (``apt-get install chromium``); a machine without it fails these
tests with the install command, it never skips them.
"""
import shutil
import subprocess
import tempfile

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def binary():
    path = shutil.which("chromium")
    assert path, "Chromium is missing: apt-get install chromium (what .ci/run does)"
    return path


def run(url, *args, timeout=120):
    """Chromium on ``url`` (a file:// URL, with a #hash state) with ``args``; stdout."""
    profile = tempfile.mkdtemp(prefix="tfhub-chromium-")
    try:
        proc = subprocess.run([binary(), *FLAGS, f"--user-data-dir={profile}", *args, url],
                              capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def dom(url):
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    return run(url, "--virtual-time-budget=5000", "--dump-dom")


def screenshot(url, path, size="1400,1000"):
    run(url, "--virtual-time-budget=5000", "--hide-scrollbars", f"--window-size={size}",
        f"--screenshot={path}")
    return path
