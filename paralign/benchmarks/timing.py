"""Timing shared by the benchmarks: device-synchronised wall time, and sides of a ratio timed in turns."""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
from tqdm import tqdm


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any]) -> float:
    _sync()
    start = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - start


def interleaved_timings(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` times after one warm-up call each, the functions taking
    turns (in a rotating order) so that a change in the machine's load hits every side of a ratio alike."""
    for fn in fns.values():
        fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in tqdm(range(repeats), desc="steps", leave=False):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(_timed(fns[name]))
    return times
