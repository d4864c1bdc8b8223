"""Batch planning by padded audio seconds, with optional length buckets, and the default collate."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

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


def pad_features(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Default collate: ``features`` padded with zeros along time (dim 0) to ``[B, T, n_mels]`` (or ``[B, T]`` for
    1-D features such as raw waveforms), ``feature_lens`` (LongTensor), ``keys``, and every other field of the
    examples as a list (``meta``, ``teacher``, ...)."""
    if not examples:
        raise ValueError("pad_features got an empty batch")
    feats = [e["features"] for e in examples]
    lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    padded = feats[0].new_zeros((len(feats), int(lens.max()), *feats[0].shape[1:]))
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = f
    batch: dict[str, Any] = {"features": padded, "feature_lens": lens, "keys": [e["key"] for e in examples]}
    # Every field any example has: tasks differ in what they carry (only KL examples hold a ``teacher_prompt``).
    names = dict.fromkeys(name for e in examples for name in e)
    for name in names:
        if name not in ("features", "key"):
            batch[name] = [e.get(name) for e in examples]
    return batch


def pad_rows(rows: list[list[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows as one ``[B, width]`` LongTensor padded with ``pad_id`` on the right (``left``: on the left,
    as generation wants), and the ``[B, width]`` mask of real tokens (1) against padding (0)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def padding_ratio(lengths: list[list[int]]) -> float:
    """Padded frames / total frames over batches given as lists of per-example lengths (0: no padding)."""
    padded = sum(max(b) * len(b) for b in lengths if b)
    real = sum(sum(b) for b in lengths)
    return (padded - real) / padded if padded else 0.0
