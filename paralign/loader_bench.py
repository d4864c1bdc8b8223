"""Benchmark of the data loader alone: samples/s and audio-seconds/s, and the padding ratio with and without
length buckets. ``python -m paralign.loader_bench SHARD_DIR [--workers 2]``."""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

from datamodules.batching import padding_ratio
from datamodules.datamodule import ShardDataModule


def loader_benchmark(shards: str, num_workers: int = 2, *, split: str = "train", bucket_window: int = 64,
                     max_batch_seconds: float = 60.0, max_batch_size: int = 32, epochs: int = 1) -> dict[str, Any]:
    """One pass (per setting) over ``shards`` through the training loader, timing decode + resample + log-mel +
    batching. Returns throughput of the bucketed loader and the padding ratio (padded frames / total frames of
    the padded batches) bucketed vs plain."""
    result: dict[str, Any] = {"shards": shards, "num_workers": num_workers, "max_batch_seconds": max_batch_seconds,
                              "max_batch_size": max_batch_size, "bucket_window": bucket_window}
    for name, window in (("bucketed", bucket_window), ("plain", 0)):
        dm = ShardDataModule(train=shards, train_split=split, num_workers=num_workers, bucket_window=window,
                             max_batch_seconds=max_batch_seconds, max_batch_size=max_batch_size)
        lengths, samples, seconds = [], 0, 0.0
        start = time.perf_counter()
        for _ in range(epochs):
            for batch in dm.train_dataloader():
                lengths.append(batch["feature_lens"].tolist())
                samples += len(batch["keys"])
                seconds += sum(batch["duration"])
        elapsed = time.perf_counter() - start
        result[name] = {"samples": samples, "batches": len(lengths), "seconds": round(elapsed, 3),
                        "samples_per_s": round(samples / elapsed, 1), "audio_s_per_s": round(seconds / elapsed, 1),
                        "padding_ratio": round(padding_ratio(lengths), 4), "skipped": dm.skip_counts()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("shards", help="shard folder, file, brace pattern or pipe: command")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--split", default="train")
    parser.add_argument("--bucket-window", type=int, default=64)
    parser.add_argument("--max-batch-seconds", type=float, default=60.0)
    parser.add_argument("--max-batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        report = loader_benchmark(args.shards, args.workers, split=args.split, bucket_window=args.bucket_window,
                                  max_batch_seconds=args.max_batch_seconds, max_batch_size=args.max_batch_size)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
