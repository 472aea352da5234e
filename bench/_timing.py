"""Timing helper shared by the benchmarks."""

import statistics
import time


def interleaved_medians(steps, repeats):
    """Median seconds of each step, timed round-robin so drift hits all alike."""
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
