"""The one helper that pads token rows (training splices, teacher generation, the judge, the cascade)."""
from __future__ import annotations

from clips.padding import pad_rows


def test_pad_rows_right_and_left():
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=0, left=True)  # generation: every row ends where it continues
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
