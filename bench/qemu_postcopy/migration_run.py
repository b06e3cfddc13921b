"""One migration between two fresh QEMUs: boot the source, wait for the workload, migrate
(precopy, then postcopy), and collect the figures of both sides."""

import os
import re
import time

from diagnostics import BenchError, log, tail
from fault_latency import TRACE_EVENTS, latency_figures
from host import free_port, host_info
from qemu_process import kill_children, qemu_cmd, start_qemu
from qmp import QMP, event_time
from serial_log import PASS_RE, read_serial, wait_passes


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
