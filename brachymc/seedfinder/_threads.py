"""Running independent pieces of the finder (the fits of one component each) on a few threads.

The compiled fits (:mod:`~brachymc.seedfinder._trf`, :mod:`~brachymc.seedfinder._kernel`) release
the GIL, so two threads fit two components at once (on the 100-seed timing CT the fit stage
took 7.3-8.1 s on one thread and 5.0-5.2 s on two; docs/benchmarks.md). The steps that run
mostly in Python (background fills, SciPy's free-shape calibration fits) gained nothing on two
threads and run on one. Nothing a piece computes depends on another
piece or on the order the pieces run in (each component has its own random stream,
:func:`~brachymc.seedfinder.finder.component_rng`), so the result is the same for any number of
threads; results come back in the order of the items.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def thread_map(fn, items, workers: int, cost=None) -> list:
    """``[fn(item) for item in items]``, on ``workers`` threads. ``cost(item)``, if given, orders
    the submissions (the costliest first, so that the last piece started is a cheap one); the
    results keep the order of ``items``."""
    items = list(items)
    if workers <= 1 or len(items) < 2:
        return [fn(it) for it in items]
    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost is not None else range(len(items))
    out = [None] * len(items)
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as ex:
        futures = {i: ex.submit(fn, items[i]) for i in order}
        for i, f in futures.items():
            out[i] = f.result()
    return out
