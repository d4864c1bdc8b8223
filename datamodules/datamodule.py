"""``ShardDataModule``: streams WebDataset shards to training, validation and test, and resumes exactly."""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig

from clips.audio import WavePrep
from clips.examples import ExampleBuilder, collate
from clips.prompts import ChatPrompter
from clips.tasks import Task
from datamodules.augment import build_augment
from datamodules.features import LogMel, build_features, build_wave_prep
from datamodules.loader import POSITION, BatchStream, ResumableStreamLoader, StreamLoader
from datamodules.stream import expand_sources

Sources = str | list[str] | list[dict[str, Any]] | None


class ShardDataModule(pl.LightningDataModule):
    """Sources are a path / folder / brace pattern / ``pipe:`` command, a list of them (one dataset), or a list of
    ``{"shards": <any of those>, "weight": w}`` (datasets mixed by weight). A folder means its
    ``<split>-*.tar`` with the split names below. Batches hold at most ``max_batch_seconds`` of padded audio and
    ``max_batch_size`` examples; ``bucket_window`` > 1 sorts that many examples by length before cutting batches.
    Validation and test keep shard order, do not shuffle, and read every sample exactly once across ranks, except
    with ``even_eval_batches`` (needed under FSDP): then every rank stops at the batch count of the shortest rank.
    ``features`` maps each decoded wave to the model's input in the workers (``datamodules.features``; a recipe's
    come from ``build_features``); default: ``LogMel(n_mels, sample_rate)``. ``augment(wave, sample_rate, rng)``
    (``datamodules.augment``) alters training waves before featurising; validation and test never augment.
    ``prep`` trims and levels every wave (``clips.audio.WavePrep``; augmentation comes between the two).
    """

    def __init__(self, train: Sources = None, val: Sources = None, test: Sources = None, *,
                 train_split: str = "train", val_split: str = "val", test_split: str = "test",
                 sample_rate: int = 16000, n_mels: int = 80, max_batch_seconds: float = 60.0,
                 max_batch_size: int = 32, bucket_window: int = 64, shuffle_buffer: int = 256,
                 num_workers: int = 2, prefetch_factor: int = 2, pin_memory: bool = False, seed: int = 0,
                 example_builder: Callable[[dict, random.Random], list[dict]] | None = None,
                 collate: Callable[[list[dict]], dict] | None = None, eval_example_builder: Callable | None = None,
                 even_eval_batches: bool = False, features: Callable[[np.ndarray], torch.Tensor] | None = None,
                 augment: Callable[[np.ndarray, int, random.Random], np.ndarray] | None = None,
                 prep: WavePrep | None = None):
        super().__init__()
        self.sources = {"train": (train, train_split), "val": (val, val_split), "test": (test, test_split)}
        self.stream_options = dict(sample_rate=sample_rate, features=features or LogMel(n_mels, sample_rate),
                                   max_batch_seconds=max_batch_seconds, max_batch_size=max_batch_size,
                                   seed=seed, collate=collate, prep=prep)
        self.bucket_window, self.shuffle_buffer = bucket_window, shuffle_buffer
        self.example_builder = example_builder
        self.augment = augment  # training only: evaluation must see the clips as they are
        self.eval_example_builder = eval_example_builder or example_builder
        self.loader_options = dict(num_workers=num_workers, prefetch_factor=prefetch_factor, pin_memory=pin_memory)
        self._loaders: dict[str, StreamLoader] = {}
        self.even_eval_batches = even_eval_batches

    @classmethod
    def from_recipe(cls, cfg: DictConfig, tasks: dict[str, Task], prompter: ChatPrompter, *,
                    eval_tasks: dict[str, Task] | None = None, need_target: bool = True,
                    even_eval_batches: bool = False, **sources: Any) -> "ShardDataModule":
        """The DataModule of a recipe's ``data:`` section, building its own examples from the tasks and the LLM's
        chat prompter, as NeMo's SALM dataset does: training samples tasks by share, evaluation makes one example
        per (clip, task) of ``eval_tasks`` (default: ``tasks``). ``even_eval_batches``: as the constructor takes it
        (the trainer's strategy decides, not the data recipe). ``sources``: ``train`` / ``val`` / ``test`` (and
        ``*_split``) as the constructor takes them."""
        d = cfg.data
        return cls(
            **sources, sample_rate=d.sample_rate, features=build_features(cfg), max_batch_seconds=d.max_batch_seconds,
            max_batch_size=d.max_batch_size, bucket_window=d.bucket_window, shuffle_buffer=d.shuffle_buffer,
            num_workers=d.num_workers, seed=d.seed, collate=collate, augment=build_augment(cfg),
            prep=build_wave_prep(cfg),
            example_builder=ExampleBuilder(tasks, prompter, d.examples_per_clip),
            eval_example_builder=ExampleBuilder(eval_tasks if eval_tasks is not None else tasks, prompter,
                                                all_tasks=True, need_target=need_target),
            even_eval_batches=even_eval_batches,
        )

    @classmethod
    def clips_of(cls, cfg: DictConfig, source: Sources, split: str) -> "ShardDataModule":
        """Every clip of ``split`` of ``source`` once, in order, as the model's loader prepares it, batched without
        examples (the loader's default collate, a dict): for statistics over clips, not training."""
        d = cfg.data
        return cls(test=source, test_split=split, sample_rate=d.sample_rate, features=build_features(cfg),
                   max_batch_seconds=d.max_batch_seconds, max_batch_size=d.max_batch_size,
                   bucket_window=d.bucket_window, num_workers=d.num_workers, seed=d.seed, prep=build_wave_prep(cfg))

    def _datasets(self, stage: str) -> list[tuple[list[str], float]]:
        spec, split = self.sources[stage]
        if spec is None:
            raise ValueError(f"ShardDataModule has no {stage} shards configured")
        entries = spec if isinstance(spec, list) and spec and isinstance(spec[0], dict) else [{"shards": spec}]
        return [(expand_sources(e["shards"], split), float(e.get("weight", 1.0))) for e in entries]

    def _loader(self, stage: str) -> StreamLoader:
        # One loader object per stage for the whole run: it carries the epoch and (train) the resume position.
        if stage not in self._loaders:
            if stage == "train":
                stream = BatchStream(self._datasets(stage), bucket_window=self.bucket_window,
                                     shuffle_buffer=self.shuffle_buffer, shuffle=True,
                                     example_builder=self.example_builder, augment=self.augment,
                                     **self.stream_options)
                self._loaders[stage] = ResumableStreamLoader(stream, **self.loader_options)
            else:
                stream = BatchStream(self._datasets(stage), bucket_window=self.bucket_window, shuffle=False,
                                     example_builder=self.eval_example_builder, **self.stream_options)
                self._loaders[stage] = StreamLoader(stream, even_batches=self.even_eval_batches, **self.loader_options)
        return self._loaders[stage]

    def train_dataloader(self) -> ResumableStreamLoader:
        return self._loader("train")

    def val_dataloader(self) -> StreamLoader | list:
        return self._loader("val") if self.sources["val"][0] is not None else []  # []: no validation

    def test_dataloader(self) -> StreamLoader | list:
        return self._loader("test") if self.sources["test"][0] is not None else []

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Called by Lightning for each batch a step really uses, unlike the loader's own count of batches
        # yielded, which runs ahead by what Lightning pre-fetches.
        tag = batch.pop(POSITION, None) if isinstance(batch, dict) else getattr(batch, POSITION, None)
        if tag is not None:
            if not isinstance(batch, dict):
                setattr(batch, POSITION, None)
            if self.trainer is None or self.trainer.training:
                self._loaders["train"].mark_consumed(tag)
        return batch

    def skip_counts(self, stage: str = "train") -> dict[str, int]:
        """Samples skipped so far by reason (corrupt tar, bad json, bad audio, ...) in ``stage``."""
        loader = self._loaders.get(stage)
        return loader.skip_counts() if loader else {}
