"""The guest's serial console log: the workload's pass lines, and signs of trouble."""

import re
import time

from diagnostics import BenchError, tail

PASS_RE = re.compile(rb"wl: pass (\d+) (\S+) pages=(\d+) bad=(\d+) ms=(\d+)")


def read_serial(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def guest_trouble(text):
    for pat in (rb"Kernel panic[^\n]*", rb"wl: ERROR[^\n]*", rb"Out of memory[^\n]*",
                rb"Attempted to kill init[^\n]*"):
        m = re.search(pat, text)
        if m:
            return m.group(0).decode("utf-8", "replace")
    return None


def wait_passes(path, count, timeout, what, procs):
    """Waits until the serial log at `path` has `count` pass lines."""
    deadline = time.monotonic() + timeout
    while True:
        text = read_serial(path)
        passes = PASS_RE.findall(text)
        if len(passes) >= count:
            return passes
        trouble = guest_trouble(text)
        if trouble:
            raise BenchError("%s: guest failed: %s\nserial log %s:\n%s"
                             % (what, trouble, path, tail(path)))
        for name, p, errpath in procs:
            if p.poll() is not None:
                raise BenchError("%s: %s QEMU exited (status %s); its log:\n%s\nserial:\n%s"
                                 % (what, name, p.returncode, tail(errpath), tail(path)))
        if time.monotonic() > deadline:
            raise BenchError("%s: %d of %d workload passes after %.0f s; serial log %s:\n%s"
                             % (what, len(passes), count, timeout, path, tail(path)))
        time.sleep(0.2)

