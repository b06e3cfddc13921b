"""How the baseline reports trouble: one exception type, log lines on stderr, and the
tail of a QEMU or serial log to show with an error."""

import sys


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write("run.py: %s\n" % msg)
    sys.stderr.flush()


def tail(path, n=25):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    " + l for l in lines[-n:]) or "    (empty)"
    except OSError as e:
        return "    (cannot read %s: %s)" % (path, e)

