"""Timing helpers shared by the benchmarks."""

import statistics
import time


def interleaved_times(steps, repeats):
    """Seconds of each step in each round, timed round-robin so drift hits all alike."""
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(steps, repeats):
    """Median seconds of each step over interleaved rounds."""
    return {name: statistics.median(values) for name, values in interleaved_times(steps, repeats).items()}


def paired_ratios(times, baseline):
    """Median over rounds of each step's time over the baseline's time in the same round.

    On a shared machine the speed drifts by tens of per cent over a minute; a
    ratio taken within one round (milliseconds apart) cancels that drift, where
    a ratio of two medians does not.
    """
    return {
        name: statistics.median(t / b for t, b in zip(values, times[baseline]))
        for name, values in times.items()
    }
