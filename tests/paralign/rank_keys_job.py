"""Run under ``torch.distributed.run`` (gloo): one epoch of the real ShardDataModule's train and val loaders on
each rank, for each worker count given; writes the sample keys this rank saw to
``<out>/rank<R>-workers<W>.json``. Used by test_strategies.py."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from datamodules.datamodule import ShardDataModule


def main(out: str, shards: str, worker_counts: list[int]) -> None:
    dist.init_process_group("gloo")
    for workers in worker_counts:
        dm = ShardDataModule(train=shards, val=shards, num_workers=workers, max_batch_size=2, bucket_window=4,
                             shuffle_buffer=4, n_mels=16)
        seen = {stage: [key for batch in loader for key in batch["keys"]]
                for stage, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader()))}
        Path(out, f"rank{dist.get_rank()}-workers{workers}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3:]])
