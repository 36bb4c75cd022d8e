"""Helpers shared by the benchmark scripts."""

from __future__ import annotations


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB, or NaN where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
