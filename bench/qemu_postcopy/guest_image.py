"""The guest's boot image: the workload (workload.c) built as a static /init, and the
initramfs (cpio newc, gzip) that holds it with busybox and the device nodes."""

import gzip
import os
import subprocess

from diagnostics import BenchError

HERE = os.path.dirname(os.path.abspath(__file__))


def build_workload(cache):
    out = os.path.join(cache, "guest", "init")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    src = os.path.join(HERE, "workload.c")
    cc = os.environ.get("CC", "gcc")
    cmd = [cc, "-static", "-O2", "-Wall", "-o", out + ".tmp", src]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError("cannot run %s: %s" % (cc, e))
    if r.returncode != 0:
        text = r.stdout.decode("utf-8", "replace")
        hint = ""
        if "-lc" in text or "libc.a" in text:
            hint = "\n(no static libc: install libc6-dev, which provides libc.a)"
        raise BenchError("%s failed:\n%s%s" % (" ".join(cmd), text, hint))
    os.replace(out + ".tmp", out)
    return out


def cpio_newc(entries):
    """entries: (name, mode, data_bytes, rdev_major, rdev_minor). Returns the archive."""
    out = bytearray()

    def pad4():
        out.extend(b"\0" * (-len(out) % 4))

    ino = 1
    for name, mode, data, rmaj, rmin in entries + [("TRAILER!!!", 0, b"", 0, 0)]:
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data), 0, 0, rmaj, rmin,
                  len(nb), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(nb)
        pad4()
        out.extend(data)
        pad4()
        ino += 1
    return bytes(out)


def build_initramfs(cache, init_path):
    with open(init_path, "rb") as f:
        init = f.read()
    with open(os.path.join(cache, "busybox"), "rb") as f:
        busybox = f.read()
    d, reg, chr_, lnk = 0o040755, 0o100755, 0o020600, 0o120777
    entries = [
        ("dev", d, b"", 0, 0),
        ("dev/console", chr_, b"", 5, 1),
        ("dev/ttyS0", chr_, b"", 4, 64),
        ("proc", d, b"", 0, 0),
        ("sys", d, b"", 0, 0),
        ("tmp", d, b"", 0, 0),
        ("bin", d, b"", 0, 0),
        ("bin/busybox", reg, busybox, 0, 0),
        ("bin/sh", lnk, b"busybox", 0, 0),
        ("init", reg, init, 0, 0),
    ]
    out = os.path.join(cache, "guest", "initramfs.cpio.gz")
    with gzip.open(out + ".tmp", "wb", compresslevel=6) as f:
        f.write(cpio_newc(entries))
    os.replace(out + ".tmp", out)
    return out

