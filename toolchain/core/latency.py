"""Latency statistics: one type and one percentile rule for every timing edgeprune reports.

Why one: ``prune``'s latency row, ``bench``, ``sweep`` and the KV260 board script must give
numbers that compare; two percentile rules would make p90 mean two things. The board has
no edgeprune, so ``edgeprune deploy vitis`` embeds this file verbatim in ``run_kv260.py``:
it imports only the standard library and keeps to syntax every Python 3 on a board runs.
"""

import platform
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyStats:
    """Per-inference latency in milliseconds: median, mean, p90, p99, min and max."""

    median_ms: float
    avg_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds):
        """Statistics of per-inference times in seconds; percentiles are nearest-rank on ``(n - 1) * q``."""
        if not seconds:
            raise ValueError("no latencies were measured")
        ms = sorted(s * 1000 for s in seconds)

        def pick(q):
            return ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]

        return cls(statistics.median(ms), statistics.fmean(ms), pick(0.9), pick(0.99), ms[0], ms[-1])


def cpu_name():
    """Human name of the CPU (x86 ``model name``, ARM ``Hardware``), for labelling numbers."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
