"""Fault latency on the destination: from QEMU's own postcopy-latency figures (QEMU >= 10.1)
or, failing those, from its trace events (QEMU 10.0)."""

import re


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

