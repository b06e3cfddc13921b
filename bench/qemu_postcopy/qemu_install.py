"""The QEMU that fetch.sh installed in the cache folder: where it is (env.sh), the
environment it runs in, and its version."""

import os
import re
import subprocess

from diagnostics import BenchError


def read_env(cache):
    path = os.path.join(cache, "env.sh")
    if not os.path.exists(path):
        raise BenchError("%s missing: run bench/qemu_postcopy/fetch.sh first" % path)
    env = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^([A-Z_]+)='(.*)'$", line.strip())
            if m:
                env[m.group(1)] = m.group(2)
    for key in ("QEMU", "QEMU_DATA_DIR", "LD_LIBRARY_PATH"):
        if not env.get(key):
            raise BenchError("%s has no %s: run fetch.sh again (FORCE=1)" % (path, key))
    for key in ("vmlinuz", "busybox"):
        if not os.path.exists(os.path.join(cache, key)):
            raise BenchError("%s missing in %s: run fetch.sh" % (key, cache))
    return env


def qemu_env(env):
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"] + (
        ":" + os.environ["LD_LIBRARY_PATH"] if os.environ.get("LD_LIBRARY_PATH") else "")
    if env.get("QEMU_MODULE_DIR"):
        e["QEMU_MODULE_DIR"] = env["QEMU_MODULE_DIR"]
    return e


def qemu_version(env):
    try:
        out = subprocess.run([env["QEMU"], "--version"], env=qemu_env(env), timeout=30,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError("cannot run %s: %s" % (env["QEMU"], e))
    first = out.decode("utf-8", "replace").splitlines()[0] if out else ""
    m = re.search(r"version (\S+)(?: \(([^)]*)\))?", first)
    if not m:
        raise BenchError("cannot run %s --version: %s" % (env["QEMU"], first or "(no output)"))
    return m.group(1), (m.group(2) or ""), first

