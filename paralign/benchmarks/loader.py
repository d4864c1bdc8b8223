"""Benchmark of the data loader alone: samples/s and audio-seconds/s, and the padding ratio with and without
length buckets: ``paralign bench --part loader [--shards DIR]``."""
from __future__ import annotations

import time
from typing import Any, Callable

from datamodules.batching import padding_ratio
from datamodules.datamodule import ShardDataModule


def loader_benchmark(shards: str, num_workers: int = 2, *, split: str = "train", bucket_window: int = 64,
                     max_batch_seconds: float = 60.0, max_batch_size: int = 32, max_samples: int = 0,
                     example_builder: Callable | None = None, collate: Callable | None = None) -> dict[str, Any]:
    """One pass (per setting, up to ``max_samples`` when > 0) over ``shards`` through the training loader: decode,
    resample, log-mel, example building and collate in ``num_workers`` workers, as training runs them (pass the
    model's ``example_builder`` and ``collate`` for the prompt tokenisation as well).

    The rates are steady-state ones, from the first batch to the last: the workers' start-up (a fixed cost per
    epoch, which a real epoch amortises over thousands of clips but which would dominate a short benchmark) is
    reported apart as ``startup_s``. The padding ratio is padded frames / total frames of the padded batches."""
    result: dict[str, Any] = {"shards": shards, "num_workers": num_workers, "max_batch_seconds": max_batch_seconds,
                              "max_batch_size": max_batch_size, "bucket_window": bucket_window}
    for name, window in (("bucketed", bucket_window), ("plain", 0)):
        dm = ShardDataModule(train=shards, train_split=split, num_workers=num_workers, bucket_window=window,
                             max_batch_seconds=max_batch_seconds, max_batch_size=max_batch_size,
                             example_builder=example_builder, collate=collate)
        lengths, samples, seconds = [], 0, 0.0
        start = time.perf_counter()
        first = None
        for batch in dm.train_dataloader():
            batch = batch if isinstance(batch, dict) else vars(batch)  # the default collate's, or a Batch
            lengths.append(batch["feature_lens"].tolist())
            if first is None:  # the first batch pays for the workers' start-up: timed apart
                first = time.perf_counter()
                continue
            samples += len(batch["keys"])
            seconds += sum(batch["duration"])
            if max_samples and samples >= max_samples:
                break
        end = time.perf_counter()
        if first is None or not samples:
            raise ValueError(f"loader benchmark: {shards} ({split}) gave fewer than 2 batches; use more clips")
        elapsed = end - first
        result[name] = {"samples": samples, "batches": len(lengths), "startup_s": round(first - start, 3),
                        "seconds": round(elapsed, 3), "samples_per_s": round(samples / elapsed, 1),
                        "audio_s_per_s": round(seconds / elapsed, 1),
                        "padding_ratio": round(padding_ratio(lengths), 4), "skipped": dm.skip_counts()}
    return result
