"""The QEMU processes of a run: their command line, starting them, and killing every one
of them when a run ends or this script exits, however it exits."""

import atexit
import os
import signal
import subprocess
import sys

from diagnostics import BenchError
from qemu_install import qemu_env

CHILDREN = []  # Popen objects of the QEMU processes we started


def kill_children():
    for p in CHILDREN:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass
    for p in CHILDREN:
        try:
            p.wait(timeout=10)
        except Exception:
            pass
    CHILDREN.clear()


def on_signal(signum, _frame):
    kill_children()
    sys.stderr.write("run.py: stopped by signal %d\n" % signum)
    os._exit(128 + signum)


def kill_children_on_exit():
    """Kills the QEMUs when the script exits, also on SIGINT, SIGTERM and SIGHUP."""
    atexit.register(kill_children)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)


def qemu_cmd(env, a, kernel, initrd, serial, qmp_path, extra):
    append = "console=ttyS0 loglevel=4 panic=0 rdinit=/init wl_mib=%d" % a.workload_mib
    firmware = []
    for d in (env.get("QEMU_FIRMWARE_DIRS") or env["QEMU_DATA_DIR"]).split(":"):
        if d and os.path.isdir(d):
            firmware += ["-L", d]
    return [env["QEMU"]] + firmware + [
            "-accel", "tcg", "-cpu", "max", "-machine", "q35",
            "-m", "%dM" % a.mem_mib, "-smp", str(a.smp),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-nic", "none",
            "-kernel", kernel, "-initrd", initrd, "-append", append,
            "-serial", "file:" + serial,
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path] + extra


def _die_with_parent():
    """In the child before exec: SIGKILL when this script dies, even by SIGKILL."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def start_qemu(cmd, env, stderr_path, name):
    with open(stderr_path, "wb") as err:
        err.write(("# " + " ".join(cmd) + "\n").encode())
        err.flush()
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                 env=qemu_env(env), preexec_fn=_die_with_parent)
        except OSError as e:
            raise BenchError("cannot start %s QEMU (%s): %s" % (name, cmd[0], e))
    CHILDREN.append(p)
    return p

