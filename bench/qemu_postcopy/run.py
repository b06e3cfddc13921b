#!/usr/bin/env python3
"""QEMU's own postcopy live migration, measured as a baseline for faultline.

Two QEMU processes on this machine (TCG), source and destination, migrate a guest
whose /init (workload.c) keeps checking and rewriting ~900 MiB of its 1 GiB. The
migration starts in precopy and switches to postcopy after --precopy-seconds
(0 = at once). Per run it records:

  total_ms             query-migrate "total-time" on the source (migrate to completed)
  resume_pause_ms      guest pause: source STOP event -> destination RESUME event
                       (QMP event timestamps, both host wall clock)
  requests             "postcopy-requests" on the source (pages the destination
                       asked for because a vCPU or QEMU touched a missing page)
  blocktime_ms         "postcopy-blocktime" on the destination (overlapped time all
                       vCPUs were blocked on missing pages; needs postcopy-blocktime)
  avg_fault_latency_us / fault_latency_p50_us / fault_latency_p99_us
                       QEMU >= 10.1 reports "postcopy-latency" (ns) and
                       "postcopy-latency-dist" (log2 buckets of us) on the
                       destination and those are used. QEMU 10.0 has neither; then,
                       unless --no-trace, the figures come from QEMU's trace events on
                       the destination: postcopy_ram_fault_thread_request (the fault
                       thread reads the userfault) to postcopy_place_page (UFFDIO_COPY
                       done, the faulting thread is woken). fault_latency_source says
                       which one ("qemu", "trace" or null = unavailable).
  corrupt              the workload saw a wrong word (either side), or the guest did
                       not keep running on the destination

Standard library only. QEMU comes from fetch.sh (its env.sh in the cache folder).
All QEMU processes are killed when this script exits, however it exits.
"""

import argparse
import atexit
import gzip
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

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


atexit.register(kill_children)
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, on_signal)


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


# ----------------------------------------------------------------------------- setup


def parse_size_mib(s):
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r (e.g. 1G, 1536M)" % s)
    n, unit = int(m.group(1)), m.group(2).upper()
    mib = {"": n, "K": n / 1024, "M": n, "G": n * 1024, "T": n * 1024 * 1024}[unit]
    if unit == "" and n > 1 << 20:  # bytes, as QEMU would read a bare number
        mib = n / (1 << 20)
    if mib < 256:
        raise argparse.ArgumentTypeError("--mem %s is too small (at least 256M)" % s)
    return int(mib)


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


def host_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": os.uname().release, "loadavg": load}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------------------- QMP


class QMP:
    """A QMP client on a unix socket. Events are kept in self.events, in order."""

    def __init__(self, path, proc, name, stderr_path, timeout=30.0):
        self.name, self.proc, self.stderr_path = name, proc, stderr_path
        self.events = []
        self.buf = b""
        self.next_id = 1
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise BenchError("%s QEMU exited (status %s) before its QMP socket was up; "
                                 "its log:\n%s" % (name, proc.returncode, tail(stderr_path)))
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise BenchError("%s QEMU: no QMP socket at %s after %.0f s; its log:\n%s"
                                     % (name, path, timeout, tail(stderr_path)))
                time.sleep(0.05)
        greeting = self._read_msg(deadline)
        if "QMP" not in greeting:
            raise BenchError("%s QEMU: unexpected QMP greeting %r" % (name, greeting))
        self.cmd("qmp_capabilities")

    def _read_msg(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s QEMU: QMP timed out; its log:\n%s"
                                 % (self.name, tail(self.stderr_path)))
            r, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if not r:
                if self.proc.poll() is not None:
                    raise BenchError("%s QEMU exited (status %s); its log:\n%s"
                                     % (self.name, self.proc.returncode, tail(self.stderr_path)))
                continue
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                raise BenchError("%s QEMU closed its QMP socket (exit status %s); its log:\n%s"
                                 % (self.name, self.proc.poll(), tail(self.stderr_path)))
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read_msg(deadline)
        return json.loads(line)

    def cmd(self, name, args=None, timeout=30.0, check=True):
        cid = self.next_id
        self.next_id += 1
        msg = {"execute": name, "id": cid}
        if args is not None:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_msg(deadline)
            if "event" in m:
                m["_recv"] = time.time()
                self.events.append(m)
                continue
            if m.get("id") != cid:
                continue
            if "error" in m:
                if check:
                    raise BenchError("%s QEMU: %s %s failed: %s" % (
                        self.name, name, json.dumps(args) if args else "", m["error"].get("desc")))
                return m
            return m.get("return")

    def first_event(self, name):
        for e in self.events:
            if e.get("event") == name:
                return e
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def event_time(e):
    ts = e.get("timestamp") or {}
    if "seconds" in ts:
        return ts["seconds"] + ts.get("microseconds", 0) / 1e6
    return e.get("_recv")


# ----------------------------------------------------------------------------- guest log

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


# ----------------------------------------------------------------------------- figures


def percentile_sorted(xs, q):
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def percentile_log2_hist(buckets, q):
    """QEMU's postcopy-latency-dist: bucket i counts faults that took [2^i, 2^(i+1)) us.
    Returns the upper edge of the bucket holding quantile q (an upper bound, within 2x)."""
    total = sum(buckets)
    if total == 0:
        return None
    want = q * total
    acc = 0
    for i, n in enumerate(buckets):
        acc += n
        if acc >= want:
            return float(2 ** (i + 1))
    return float(2 ** len(buckets))


TRACE_RE = re.compile(r"^\d+@(\d+)\.(\d+):(postcopy_ram_fault_thread_request|postcopy_page_req_del)"
                      r" (?:Request for HVA=|resolved page req )(0x[0-9a-fA-F]+)")
TRACE_EVENTS = ("postcopy_ram_fault_thread_request", "postcopy_page_req_del")


def trace_latencies(path, page_size=4096):
    """Fault latencies (us) from the destination's trace log.

    postcopy_ram_fault_thread_request: the fault thread has read a userfault (first
    one per page counts); postcopy_page_req_del: a page that had been requested was
    placed (UFFDIO_COPY returned; the kernel has woken the faulting threads). Faults on
    pages that arrived before the request went out never get a req_del (QEMU just wakes
    the thread); they are left out and counted as `unmatched`."""
    pending = {}
    lat = []
    try:
        f = open(path, "r", errors="replace")
    except OSError:
        return None, 0
    with f:
        for line in f:
            m = TRACE_RE.match(line)
            if not m:
                continue
            t = int(m.group(1)) + int(m.group(2)) / 1e6
            page = int(m.group(4), 16) & ~(page_size - 1)
            if m.group(3) == "postcopy_ram_fault_thread_request":
                pending.setdefault(page, t)
            else:
                t0 = pending.pop(page, None)
                if t0 is not None:
                    lat.append((t - t0) * 1e6)
    return lat, len(pending)


def latency_figures(dst_info, trace_path, use_trace):
    out = {"avg_fault_latency_us": None, "fault_latency_p50_us": None,
           "fault_latency_p99_us": None, "fault_latency_source": None,
           "fault_latency_samples": None, "fault_latency_unmatched": None}
    if "postcopy-latency" in dst_info or "postcopy-latency-dist" in dst_info:
        out["fault_latency_source"] = "qemu"
        if dst_info.get("postcopy-latency") is not None:
            out["avg_fault_latency_us"] = dst_info["postcopy-latency"] / 1000.0  # ns -> us
        dist = dst_info.get("postcopy-latency-dist")
        if dist:
            out["fault_latency_p50_us"] = percentile_log2_hist(dist, 0.50)
            out["fault_latency_p99_us"] = percentile_log2_hist(dist, 0.99)
            out["fault_latency_samples"] = sum(dist)
        return out
    if use_trace and trace_path:
        lat, unmatched = trace_latencies(trace_path)
        out["fault_latency_unmatched"] = unmatched
        if lat:
            lat.sort()
            out.update(fault_latency_source="trace",
                       avg_fault_latency_us=sum(lat) / len(lat),
                       fault_latency_p50_us=percentile_sorted(lat, 0.50),
                       fault_latency_p99_us=percentile_sorted(lat, 0.99),
                       fault_latency_samples=len(lat))
    return out


# ----------------------------------------------------------------------------- one run


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


def one_run(idx, a, env, kernel, initrd, version):
    rundir = os.path.join(a.cache, "runs", "%s-%d" % (time.strftime("%Y%m%d-%H%M%S"), idx))
    os.makedirs(rundir, exist_ok=True)
    f = lambda n: os.path.join(rundir, n)
    port = free_port()
    res = {"run": idx, "qemu_version": version, "mem_mib": a.mem_mib,
           "host_loadavg_start": host_info()["loadavg"],
           "workload_mib": a.workload_mib, "precopy_seconds": a.precopy_seconds,
           "smp": a.smp, "preempt": a.preempt, "logs": rundir}

    dst_extra = ["-incoming", "defer"]
    if a.trace:
        dst_extra += ["-msg", "timestamp=on", "-D", f("dst-trace.log")]
        for ev in TRACE_EVENTS:
            dst_extra += ["-trace", ev]
    procs = []
    src_p = start_qemu(qemu_cmd(env, a, kernel, initrd, f("src-serial.log"), f("src.qmp"), []),
                       env, f("src-qemu.log"), "source")
    procs.append(("source", src_p, f("src-qemu.log")))
    dst_p = start_qemu(qemu_cmd(env, a, kernel, initrd, f("dst-serial.log"), f("dst.qmp"),
                                dst_extra), env, f("dst-qemu.log"), "destination")
    procs.append(("destination", dst_p, f("dst-qemu.log")))
    src = QMP(f("src.qmp"), src_p, "source", f("src-qemu.log"))
    dst = QMP(f("dst.qmp"), dst_p, "destination", f("dst-qemu.log"))
    try:
        t_boot = time.monotonic()
        passes = wait_passes(f("src-serial.log"), 1, a.boot_timeout,
                             "run %d, boot and first pass on the source" % idx, procs)
        m = re.search(rb"wl: start mib=(\d+)", read_serial(f("src-serial.log")))
        if m:
            res["workload_mib"] = int(m.group(1))
        res["boot_to_first_pass_s"] = round(time.monotonic() - t_boot, 1)
        res["pass_ms_before"] = int(passes[-1][4])
        log("run %d: guest up, workload %d MiB, first pass took %s ms (%.0f s from start)"
            % (idx, res["workload_mib"], passes[-1][4].decode(), res["boot_to_first_pass_s"]))

        caps = lambda names: {"capabilities": [{"capability": c, "state": True} for c in names]}
        extra_caps = ["postcopy-preempt"] if a.preempt else []
        src.cmd("migrate-set-capabilities", caps(["postcopy-ram"] + extra_caps))
        dst.cmd("migrate-set-capabilities",
                caps(["postcopy-ram", "postcopy-blocktime"] + extra_caps))
        if a.max_bandwidth_mib > 0:
            src.cmd("migrate-set-parameters", {"max-bandwidth": a.max_bandwidth_mib << 20})
        dst.cmd("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % port})

        t0 = time.monotonic()
        src.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % port})
        switched = False
        info = {}
        deadline = t0 + a.migrate_timeout
        while True:
            now = time.monotonic()
            if not switched and now - t0 >= a.precopy_seconds:
                r = src.cmd("migrate-start-postcopy", check=False)
                if isinstance(r, dict) and "error" in r:
                    # Completed in precopy already (or failed): the status says which.
                    res["start_postcopy_error"] = r["error"].get("desc")
                switched = True
            info = src.cmd("query-migrate")
            st = info.get("status")
            if st in ("completed", "failed", "cancelled"):
                break
            if now > deadline:
                raise BenchError("run %d: migration not done after %.0f s (status %s)\n"
                                 "source log:\n%s\ndestination log:\n%s"
                                 % (idx, a.migrate_timeout, st, tail(f("src-qemu.log")),
                                    tail(f("dst-qemu.log"))))
            time.sleep(0.005 if not switched else 0.05)
        res["wall_ms"] = round((time.monotonic() - t0) * 1000, 1)
        if info.get("status") != "completed":
            raise BenchError("run %d: migration %s: %s\nsource log:\n%s\ndestination log:\n%s"
                             % (idx, info.get("status"), info.get("error-desc", ""),
                                tail(f("src-qemu.log")), tail(f("dst-qemu.log"))))

        # The destination's view (blocktime, QEMU >= 10.1 latencies) once it is done too.
        dinfo = {}
        ddeadline = time.monotonic() + 60
        while True:
            dinfo = dst.cmd("query-migrate")
            if dinfo.get("status") in ("completed", "failed") or time.monotonic() > ddeadline:
                break
            time.sleep(0.05)
        res["dst_status"] = dinfo.get("status")

        ram = info.get("ram", {})
        res["mode"] = "precopy" if "start_postcopy_error" in res else "postcopy"
        res["total_ms"] = info.get("total-time")
        res["setup_ms"] = info.get("setup-time")
        res["requests"] = ram.get("postcopy-requests")
        res["transferred_mib"] = round(ram.get("transferred", 0) / 2**20, 1)
        res["precopy_mib"] = round(ram.get("precopy-bytes", 0) / 2**20, 1)
        res["postcopy_mib"] = round(ram.get("postcopy-bytes", 0) / 2**20, 1)
        res["downtime_mib"] = round(ram.get("downtime-bytes", 0) / 2**20, 1)
        res["blocktime_ms"] = dinfo.get("postcopy-blocktime")
        res["vcpu_blocktime_ms"] = dinfo.get("postcopy-vcpu-blocktime")
        if isinstance(res["vcpu_blocktime_ms"], list):
            res["vcpu_blocktime_total_ms"] = sum(res["vcpu_blocktime_ms"])
        for k in ("postcopy-latency", "postcopy-vcpu-latency", "postcopy-non-vcpu-latency",
                  "postcopy-latency-dist"):
            if k in dinfo:
                res["qemu_" + k.replace("-", "_")] = dinfo[k]

        # Guest pause: STOP on the source to RESUME on the destination (QMP event stamps).
        src.cmd("query-status")
        dst.cmd("query-status")
        stop, resume = src.first_event("STOP"), dst.first_event("RESUME")
        res["resume_pause_ms"] = (round((event_time(resume) - event_time(stop)) * 1000, 2)
                                  if stop and resume else None)

        # The guest goes on at the destination: a few more passes, no CORRUPT anywhere.
        done_before = len(PASS_RE.findall(read_serial(f("dst-serial.log"))))
        after = wait_passes(f("dst-serial.log"), done_before + a.post_passes, a.pass_timeout,
                            "run %d, passes on the destination" % idx,
                            [("destination", dst_p, f("dst-qemu.log"))])
        res["passes_after"] = len(after)
        res["pass_ms_after"] = int(after[-1][4])
        src_text, dst_text = read_serial(f("src-serial.log")), read_serial(f("dst-serial.log"))
        res["corrupt"] = b"CORRUPT" in src_text or b"CORRUPT" in dst_text
        if res["corrupt"]:
            bad = [l for l in (src_text + dst_text).decode("utf-8", "replace").splitlines()
                   if "CORRUPT" in l][:10]
            log("run %d: CORRUPT lines:\n    %s" % (idx, "\n    ".join(bad)))
    finally:
        src.close()
        dst.close()
        kill_children()

    res.update(latency_figures(dinfo, f("dst-trace.log") if a.trace else None, a.trace))
    if not a.keep_logs and not res.get("corrupt"):
        for n in ("dst-trace.log",):
            try:
                os.remove(f(n))
            except OSError:
                pass
    return res


# ----------------------------------------------------------------------------- report

FIELDS = [  # (json field, column title, format)
    ("total_ms", "total ms", "%.0f"),
    ("resume_pause_ms", "pause ms", "%.1f"),
    ("requests", "requests", "%.0f"),
    ("blocktime_ms", "blocktime ms", "%.0f"),
    ("vcpu_blocktime_total_ms", "vCPU blocked ms", "%.0f"),
    ("avg_fault_latency_us", "avg fault us", "%.0f"),
    ("fault_latency_p50_us", "p50 fault us", "%.0f"),
    ("fault_latency_p99_us", "p99 fault us", "%.0f"),
    ("postcopy_mib", "postcopy MiB", "%.0f"),
]


def fmt(v, f):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f % v


def median_of(runs, key):
    xs = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and
          not isinstance(r.get(key), bool)]
    return statistics.median(xs) if xs else None


def print_table(runs, summary, out=sys.stdout):
    cols = [("run", "run", "%s")] + FIELDS + [("corrupt", "corrupt", "%s")]
    rows = [[fmt(r.get(k), f) if k != "run" else str(r["run"]) for k, _, f in cols] for r in runs]
    rows.append([fmt(summary.get(k), f) if k != "run" else "median" for k, _, f in cols])
    widths = [max(len(t), *(len(row[i]) for row in rows)) for i, (_, t, _) in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    print(line([t for _, t, _ in cols]), file=out)
    for i, row in enumerate(rows):
        if i == len(rows) - 1:
            print(line(["-" * w for w in widths]), file=out)
        print(line(row), file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="migrations to run (default 3; "
                    "the table shows their median)")
    ap.add_argument("--precopy-seconds", type=float, default=1.0,
                    help="precopy before migrate-start-postcopy (0 = postcopy at once; default 1)")
    ap.add_argument("--mem", default="1G", type=parse_size_mib, dest="mem_mib",
                    help="guest memory (default 1G)")
    ap.add_argument("--workload-mib", type=int, default=0,
                    help="memory the workload checks and rewrites (default 900 per GiB)")
    ap.add_argument("--smp", type=int, default=1, help="guest vCPUs (default 1)")
    ap.add_argument("--max-bandwidth-mib", type=int, default=100000,
                    help="source max-bandwidth in MiB/s (default 100000, i.e. no limit; "
                    "0 keeps QEMU's default)")
    ap.add_argument("--preempt", action="store_true",
                    help="also enable QEMU's postcopy-preempt capability (page requests get "
                    "their own channel instead of queueing behind the background stream)")
    ap.add_argument("--post-passes", type=int, default=3,
                    help="workload passes to see on the destination after migration (default 3)")
    ap.add_argument("--no-trace", dest="trace", action="store_false",
                    help="no trace events on the destination (QEMU 10.0 then has no fault "
                    "latency figures)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object per run, then one with the medians")
    ap.add_argument("--cache", default=os.environ.get(
        "QEMU_POSTCOPY_CACHE", os.path.join(REPO, "build", "qemu-postcopy")),
        help="fetch.sh's folder (default build/qemu-postcopy, or $QEMU_POSTCOPY_CACHE)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the trace logs of the runs")
    ap.add_argument("--boot-timeout", type=float, default=300,
                    help="seconds for boot + fill + first pass (default 300)")
    ap.add_argument("--migrate-timeout", type=float, default=300,
                    help="seconds for one migration (default 300)")
    ap.add_argument("--pass-timeout", type=float, default=180,
                    help="seconds for the passes after migration (default 180)")
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    if a.precopy_seconds < 0:
        ap.error("--precopy-seconds must be >= 0")
    if not a.workload_mib:
        a.workload_mib = a.mem_mib * 900 // 1024
    if a.workload_mib > a.mem_mib - 100:
        ap.error("--workload-mib %d leaves the guest kernel under 100 MiB of %d"
                 % (a.workload_mib, a.mem_mib))
    a.cache = os.path.abspath(a.cache)

    try:
        env = read_env(a.cache)
        ver, pkg, verline = qemu_version(env)
        version = ver + (" (%s)" % pkg if pkg else "")
        log(verline)
        init = build_workload(a.cache)
        initrd = build_initramfs(a.cache, init)
        kernel = os.path.join(a.cache, "vmlinuz")
        runs, failures = [], []
        for i in range(1, a.runs + 1):
            log("run %d of %d: %d MiB guest, %d MiB workload, precopy %.1f s"
                % (i, a.runs, a.mem_mib, a.workload_mib, a.precopy_seconds))
            try:
                r = one_run(i, a, env, kernel, initrd, version)
            except BenchError as e:
                log("run %d failed: %s" % (i, e))
                failures.append(str(e))
                continue
            runs.append(r)
            log("run %d: %s" % (i, ", ".join("%s=%s" % (k, fmt(r.get(k), f))
                                             for k, _, f in FIELDS + [("corrupt", "", "%s")])))
            if a.json:
                print(json.dumps(dict(kind="run", **r)), flush=True)
    except BenchError as e:
        log("error: %s" % e)
        return 2

    if not runs:
        log("every run failed")
        return 2
    summary = {"kind": "median", "runs": len(runs), "failed_runs": len(failures),
               "qemu_version": version, "mem_mib": a.mem_mib,
               "workload_mib": runs[0].get("workload_mib"), "host": host_info(),
               "precopy_seconds": a.precopy_seconds, "smp": a.smp, "preempt": a.preempt,
               "fault_latency_source": runs[0].get("fault_latency_source"),
               "corrupt": any(r.get("corrupt") for r in runs)}
    for k in ("total_ms", "resume_pause_ms", "requests", "blocktime_ms", "avg_fault_latency_us",
              "fault_latency_p50_us", "fault_latency_p99_us", "fault_latency_samples",
              "vcpu_blocktime_total_ms", "postcopy_mib", "precopy_mib",
              "transferred_mib", "wall_ms", "pass_ms_before", "pass_ms_after"):
        summary[k] = median_of(runs, k)
    if a.json:
        print(json.dumps(summary), flush=True)
    out = sys.stderr if a.json else sys.stdout
    print("\nQEMU %s postcopy%s, %d MiB guest (TCG, -smp %d), workload rewrites %d MiB, "
          "precopy %.1f s before postcopy; %d run(s)" % (version,
                                                         " (postcopy-preempt)" if a.preempt
                                                         else "", a.mem_mib, a.smp,
                                                         summary["workload_mib"],
                                                         a.precopy_seconds, len(runs)),
          file=out)
    h = summary["host"]
    print("host: %s, %s cores, Linux %s, load average %s at the end" % (
        h["cpu"], h["cores"], h["kernel"], h["loadavg"]), file=out)
    print_table(runs, summary, out)
    src = summary["fault_latency_source"]
    print("fault latency: %s" % {
        "qemu": "QEMU's postcopy-latency / postcopy-latency-dist (p50/p99 = upper edge of "
                "the log2 bucket)",
        "trace": "from destination trace events (fault thread reads the fault -> page "
                 "placed); QEMU %s has no postcopy-latency in query-migrate" % ver,
        None: "unavailable (QEMU %s has no postcopy-latency; run without --no-trace)" % ver,
    }[src], file=out)
    print("pause = source STOP -> destination RESUME (QMP event timestamps); "
          "logs in %s/runs" % a.cache, file=out)
    if failures:
        print("%d run(s) failed; first: %s" % (len(failures), failures[0].splitlines()[0]),
              file=out)
    if summary["corrupt"]:
        print("CORRUPT: the workload saw wrong memory (see the serial logs)", file=out)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
