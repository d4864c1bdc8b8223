"""Padding in one place: token-id rows (prompts, replies) and feature sequences (a batch's speech)."""
from __future__ import annotations

import torch


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


def pad_frames(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature sequences (time first: ``[T, n_mels]``, or ``[T]`` for raw waveforms) zero-padded along time to
    ``[B, T_max, ...]``, and their lengths (LongTensor)."""
    if not features:
        raise ValueError("no features to pad: an empty batch")
    lens = torch.tensor([f.shape[0] for f in features], dtype=torch.long)
    padded = features[0].new_zeros((len(features), int(lens.max()), *features[0].shape[1:]))
    for i, f in enumerate(features):
        padded[i, : f.shape[0]] = f
    return padded, lens
