"""Batch planning by padded audio seconds, with optional length buckets, and the default collate."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from clips.padding import pad_frames

T = TypeVar("T")


def plan_batches(items: Iterator[T], duration: Callable[[T], float], *, max_batch_seconds: float,
                 max_batch_size: int, bucket_window: int = 0, rng: random.Random | None = None) -> Iterator[list[T]]:
    """Group ``items`` into batches whose *padded* length (size x longest duration, what memory sees) stays
    within ``max_batch_seconds`` and whose size stays within ``max_batch_size``.

    ``bucket_window > 1``: read that many items, sort them by duration, cut batches, then yield those batches in
    a shuffled order (``rng``), so batches hold similar lengths (less padding) without ordering the epoch by
    length. ``bucket_window <= 1``: batches in arrival order.
    """
    if bucket_window <= 1:
        yield from _cut(items, duration, max_batch_seconds, max_batch_size)
        return
    window: list[T] = []
    for item in items:
        window.append(item)
        if len(window) >= bucket_window:
            yield from _bucketed(window, duration, max_batch_seconds, max_batch_size, rng)
            window = []
    if window:
        yield from _bucketed(window, duration, max_batch_seconds, max_batch_size, rng)


def _bucketed(window: list[T], duration: Callable[[T], float], max_seconds: float, max_size: int,
              rng: random.Random | None) -> list[list[T]]:
    batches = list(_cut(iter(sorted(window, key=duration)), duration, max_seconds, max_size))
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _cut(items: Iterator[T], duration: Callable[[T], float], max_seconds: float,
         max_size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    longest = 0.0
    for item in items:
        d = duration(item)
        grown = max(longest, d)
        if batch and (len(batch) >= max_size or grown * (len(batch) + 1) > max_seconds):
            yield batch
            batch, grown = [], d
        batch.append(item)
        longest = grown
    if batch:
        yield batch


def pad_features(items: list[Any]) -> dict[str, Any]:
    """The loader's default collate, for items that are not training examples (a ``Clip`` per item, as the
    default example builder gives): ``features`` padded along time (``clips.padding.pad_frames``),
    ``feature_lens``, ``keys``, and every other attribute of the items as a list. Training batches are
    ``clips.examples.Batch`` (its ``collate``), with their declared fields only."""
    if not items:
        raise ValueError("pad_features got an empty batch")
    features, lens = pad_frames([item.features for item in items])
    batch: dict[str, Any] = {"features": features, "feature_lens": lens, "keys": [item.key for item in items]}
    for name in vars(items[0]):
        if name not in ("features", "key"):
            batch[name] = [getattr(item, name) for item in items]
    return batch


def padding_ratio(lengths: list[list[int]]) -> float:
    """Padded frames / total frames over batches given as lists of per-example lengths (0: no padding)."""
    padded = sum(max(b) * len(b) for b in lengths if b)
    real = sum(sum(b) for b in lengths)
    return (padded - real) / padded if padded else 0.0
