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
# The parts, one idea each: qemu_install (the QEMU fetch.sh installed), guest_image
# (workload and initramfs), qemu_process (starting and killing QEMUs), qmp (the QMP
# client), serial_log (the guest's pass lines), fault_latency, migration_run (one run),
# report (table and medians), host, diagnostics (errors and logs).

import argparse
import json
import os
import re
import sys

from diagnostics import BenchError, log
from guest_image import build_initramfs, build_workload
from migration_run import one_run
from qemu_install import qemu_version, read_env
from qemu_process import kill_children_on_exit
from report import FIELDS, fmt, print_report, summarize

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

kill_children_on_exit()


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
    summary = summarize(runs, failures, a, version)
    if a.json:
        print(json.dumps(summary), flush=True)
    out = sys.stderr if a.json else sys.stdout
    return print_report(runs, failures, summary, a, ver, version, out)


if __name__ == "__main__":
    sys.exit(main())
