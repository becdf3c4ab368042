"""Wall-clock timing shared by the benchmarks (run as ``python bench/NAME.py``)."""
import time

import numpy as np


def best_time(function, *args, repeats=1):
    """``(best seconds over repeats, result of the last call)``: the best run is the least disturbed
    by other work on a shared machine."""
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result
