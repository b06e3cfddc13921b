"""The report: the table of runs with their medians, and the figures' summary."""

import statistics
import sys

from host import host_info

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



def summarize(runs, failures, a, version):
    """The medians of the runs that worked, with what they ran on."""
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
    return summary


def print_report(runs, failures, summary, a, ver, version, out):
    """The table of runs and the lines that say how to read it. Returns the exit status:
    1 if the workload saw wrong memory or a run failed, else 0."""
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
