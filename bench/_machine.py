"""How fast this machine's CPU is right now, for reading a benchmark's figures.

The shared 2-core machines the benchmarks run on change speed over an hour (the same quick run
of ``placement`` gave 4.6 and 10.6 ms medians an hour apart, with a load average under 2 both
times), so the load average alone does not tell a slow machine from slow code. Each benchmark
that holds a millisecond target reports ``cpu_reference_ms`` beside its figures: the time of a
fixed pure-Python loop, measured in the same process and minute (about 110 ms when this machine
is fast, 190 ms when it is slow). Figures are compared only between runs of similar reference.
"""

from __future__ import annotations

import time


def cpu_reference_ms(rounds: int = 3) -> float:
    """Best of ``rounds`` timings of summing i*i over three million integers (milliseconds)."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        sum(i * i for i in range(3_000_000))
        best = min(best, (time.perf_counter() - t) * 1000)
    return round(best, 1)
