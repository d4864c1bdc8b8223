"""The worker-side batch stream and the main-process loaders (with exact-resume state for training).

Exact resume, in short: each (rank, worker) *role* produces a deterministic sequence of batches, and the
DataLoader hands them out round-robin over the live workers. The main process records, per role, how many
batches were really *consumed* by training steps (``mark_consumed``, called from the DataModule's
``on_before_batch_transfer``, so batches Lightning pre-fetched but never trained on do not count). On restore each
worker skips its consumed batches, planned from json durations without decoding, and the workers' roles are
rotated so the round-robin resumes at the role that was next.
"""
from __future__ import annotations

import copy
import ctypes
import os
import random
import signal
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from clips.audio import WavePrep, audio_problem, load_audio
from clips.clip import Clip
from datamodules.batching import pad_features, plan_batches
from datamodules.features import LogMel
from datamodules.stream import LightClip, mix, role_clips, shuffle_buffer

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POSITION = "position"  # where a batch carries (epoch, role, index, skip counts) to mark_consumed: key or field


def single_example(clip: Clip, rng: random.Random) -> list[Clip]:
    """The default example builder: the clip itself, once."""
    return [clip]


class BatchStream(IterableDataset):
    """Yields ``(position, skip_counts, batch)``; ``batch`` is None in the final item of each worker, which only
    carries the last skip counts. ``datasets`` is a list of (shard urls, weight)."""

    def __init__(self, datasets: list[tuple[list[str], float]], *, sample_rate: int = 16000,
                 features: Callable | None = None, max_batch_seconds: float = 60.0, max_batch_size: int = 32,
                 bucket_window: int = 0, shuffle_buffer: int = 0, shuffle: bool = True, seed: int = 0,
                 example_builder: Callable[[dict, random.Random], list[dict]] | None = None,
                 collate: Callable[[list[dict]], dict] | None = None,
                 augment: Callable[[Any, int, random.Random], Any] | None = None, prep: WavePrep | None = None):
        self.datasets = datasets
        self.prep = prep or WavePrep()  # silence trimming and level, as inference does them (clips.audio)
        self.sample_rate = sample_rate
        self.features = features or LogMel(sample_rate=sample_rate)
        self.max_batch_seconds, self.max_batch_size = max_batch_seconds, max_batch_size
        self.bucket_window, self.shuffle_buffer, self.shuffle, self.seed = bucket_window, shuffle_buffer, shuffle, seed
        self.example_builder = example_builder or single_example
        self.collate = collate or pad_features
        # Applied to each decoded wave before featurising (training only). Batches are planned from the json
        # durations, so a speed-perturbed batch may hold up to 1 / min(speeds) times max_batch_seconds.
        self.augment = augment
        # Set by the loader in the main process before the workers start.
        self.epoch, self.rank, self.world_size, self.role_offset = 0, 0, 1, 0
        self.skip: dict[int, int] = {}

    def __iter__(self) -> Iterator[tuple[tuple[int, int, int | None], dict, Any]]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info else (1, 0)
        local = (worker + self.role_offset) % n_workers
        role, n_roles = self.rank * n_workers + local, self.world_size * n_workers
        skips: Counter = Counter()
        seed, epoch = self.seed, self.epoch
        clips: Iterator[LightClip] = mix(
            [role_clips(urls, role, n_roles, epoch, seed, self.shuffle, skips) for urls, _ in self.datasets],
            [w for _, w in self.datasets], random.Random(f"mix:{seed}:{epoch}:{role}"))
        if self.shuffle:
            clips = shuffle_buffer(clips, self.shuffle_buffer, random.Random(f"buffer:{seed}:{epoch}:{role}"))
        pending = ((example, light) for light in clips for example in
                   self.example_builder(light.clip, random.Random(f"example:{seed}:{epoch}:{light.key}")))
        batches = plan_batches(pending, lambda p: p[1].duration, max_batch_seconds=self.max_batch_seconds,
                               max_batch_size=self.max_batch_size, bucket_window=self.bucket_window,
                               rng=random.Random(f"batches:{seed}:{epoch}:{role}") if self.shuffle else None)
        already = self.skip.get(local, 0)
        for index, planned in enumerate(batches):
            if index < already:
                if index == already - 1:
                    skips.clear()  # counted, and saved, by the run that consumed these batches
                continue
            examples = self._decode(planned, skips)
            if not examples:
                continue
            delta = dict(skips)
            skips.clear()
            yield (epoch, local, index), delta, self.collate(examples)
        yield (epoch, local, None), dict(skips), None

    def _decode(self, planned: list[tuple[dict, LightClip]], skips: Counter) -> list[dict]:
        """Decode, resample and featurise each clip of the batch once; drop the examples of bad clips."""
        decoded: dict[int, Any] = {}
        examples = []
        for example, light in planned:
            if id(light) not in decoded:
                decoded[id(light)] = self._decode_clip(light, skips)
            if decoded[id(light)] is not None:
                example.features = decoded[id(light)]
                examples.append(example)
        return examples

    def _decode_clip(self, light: LightClip, skips: Counter) -> Any:
        try:
            wave, sr = load_audio(light.audio_bytes, self.sample_rate)
        except (RuntimeError, ValueError, OSError):
            skips["bad_audio"] += 1
            return None
        problem = audio_problem(wave, sr)
        if problem:
            skips[problem] += 1
            return None
        wave = self.prep.trim(wave, sr)
        if self.augment is not None:
            # seeded per clip and epoch, so a resumed run augments each clip as the first run did
            wave = self.augment(wave, sr, random.Random(f"augment:{self.seed}:{self.epoch}:{light.key}"))
        return self.features(self.prep.level(wave))


def _identity(item: Any) -> Any:
    return item


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one core per worker; the default oversubscribes the machine
    _die_with_parent()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the process that started it dies: after a ``kill -9`` of training, a
    worker would otherwise live on (parent PID 1), holding memory and open shards. Elsewhere, the DataLoader's own
    watchdog (it polls the parent) stays the only guard."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StreamLoader:
    """Iterates a BatchStream through a DataLoader (batch_size=None: batching happens in the workers). Keeps
    skip counts by reason (``skip_counts``)."""

    def __init__(self, stream: BatchStream, *, num_workers: int = 2, prefetch_factor: int = 2,
                 pin_memory: bool = False, even_batches: bool = False):
        self.stream, self.num_workers = stream, num_workers
        self.prefetch_factor, self.pin_memory, self.even_batches = prefetch_factor, pin_memory, even_batches
        self.epoch = 0
        self.skips: Counter = Counter()

    def skip_counts(self) -> dict[str, int]:
        return dict(self.skips)

    def _configured_stream(self, rank: int, world: int) -> BatchStream:
        stream = copy.copy(self.stream)
        stream.epoch, stream.rank, stream.world_size = self.epoch, rank, world
        return stream

    def __iter__(self) -> Iterator[dict]:
        rank, world = rank_and_world()
        loader = DataLoader(self._configured_stream(rank, world), batch_size=None, num_workers=self.num_workers,
                            collate_fn=_identity, worker_init_fn=_worker_init, pin_memory=self.pin_memory,
                            prefetch_factor=self.prefetch_factor if self.num_workers else None)
        items = iter(loader)
        delivered, must_yield = 0, self._must_yield()
        while True:
            item = next(items, None)
            while item is not None and item[2] is None:  # a worker's final skip counts
                self._on_worker_end(item[0], item[1])
                item = next(items, None)
            if self.even_batches and world > 1 and not _all_ranks(item is not None):
                break  # another rank ran out: every rank stops at the same step (DDP would hang otherwise)
            if item is None:
                break
            delivered += 1
            yield self._deliver(*item)
        if not delivered and must_yield:
            # Every sample unreadable (or no sample at all): the next epoch would be as empty, and Lightning would
            # spin through empty epochs for ever.
            sources = sorted({url for urls, _ in self.stream.datasets for url in urls})
            raise RuntimeError(f"no readable sample in an epoch of {', '.join(sources[:4])}"
                               f"{' ...' if len(sources) > 4 else ''} (skipped: {dict(self.skips) or 'none'})")
        self._on_epoch_end()

    def _must_yield(self) -> bool:
        """Whether an epoch without a batch is an error: evaluation may rightly find none (a task without references
        in a split); training never, except past batches an earlier run consumed."""
        return False

    def _on_worker_end(self, position: tuple, delta: dict) -> None:
        self.skips.update(delta)

    def _deliver(self, position: tuple, delta: dict, batch: Any) -> Any:
        self.skips.update(delta)
        return batch

    def _on_epoch_end(self) -> None:
        self.epoch += 1


def _all_ranks(flag: bool) -> bool:
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


class ResumableStreamLoader(StreamLoader):
    """The training loader: Lightning saves ``state_dict()`` in checkpoints and restores it before iterating
    (it treats any loader with state_dict/load_state_dict as stateful). Batches carry their position under
    ``POSITION``; ``mark_consumed`` (the DataModule's ``on_before_batch_transfer``) removes it and records it."""

    def __init__(self, stream: BatchStream, **kwargs: Any):
        kwargs.setdefault("even_batches", True)
        super().__init__(stream, **kwargs)
        # skip counts up to the last batch a training step used (``skips`` also counts pre-fetched batches)
        self.consumed_skips: Counter = Counter()
        self._reset_position()

    def _reset_position(self) -> None:
        self.consumed: dict[int, int] = {}  # local role -> batches consumed this epoch
        self.last_role: int | None = None
        self.ended: set[int] = set()  # roles whose final skip counts were already added

    def _must_yield(self) -> bool:
        return not self.consumed

    def _configured_stream(self, rank: int, world: int) -> BatchStream:
        stream = super()._configured_stream(rank, world)
        roles = max(1, self.num_workers)
        stream.role_offset = 0 if self.last_role is None else (self.last_role + 1) % roles
        stream.skip = dict(self.consumed)
        return stream

    def _on_worker_end(self, position: tuple, delta: dict) -> None:
        if position[1] not in self.ended:
            self.ended.add(position[1])
            self.skips.update(delta)
            self.consumed_skips.update(delta)

    def _deliver(self, position: tuple, delta: dict, batch: Any) -> Any:
        if isinstance(batch, dict):
            batch[POSITION] = (position, delta)
        elif hasattr(batch, POSITION):
            setattr(batch, POSITION, (position, delta))
        else:
            raise TypeError(f"the collate function must return a dict or an object with a {POSITION!r} field for "
                            f"resumable loading, got {type(batch).__name__}")
        return super()._deliver(position, delta, batch)

    def mark_consumed(self, tag: tuple) -> None:
        (epoch, role, index), delta = tag
        self.consumed_skips.update(delta)
        if epoch == self.epoch:
            self.consumed[role] = index + 1
            self.last_role = role

    def _on_epoch_end(self) -> None:
        super()._on_epoch_end()
        self._reset_position()

    def _local_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": dict(self.consumed), "last_role": self.last_role,
                "ended": sorted(self.ended), "skips": dict(self.consumed_skips), "num_workers": self.num_workers}

    def state_dict(self) -> dict[str, Any]:
        """This loader's position on every rank (a collective: Lightning builds checkpoints on all ranks)."""
        rank, world = rank_and_world()
        states: list = [None] * world
        if world > 1:
            dist.all_gather_object(states, self._local_state())
        else:
            states = [self._local_state()]
        return {"seed": self.stream.seed, "world_size": world, "ranks": states}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rank, world = rank_and_world()
        mine = state["ranks"][min(rank, len(state["ranks"]) - 1)]
        self.epoch, self.skips, self.consumed_skips = mine["epoch"], Counter(mine["skips"]), Counter(mine["skips"])
        self._reset_position()
        if state["world_size"] != world or mine["num_workers"] != self.num_workers or state["seed"] != self.stream.seed:
            warnings.warn(
                f"data position saved with world size {state['world_size']}, {mine['num_workers']} workers, seed "
                f"{state['seed']}; now {world}, {self.num_workers}, {self.stream.seed}: exact resume is impossible, "
                f"epoch {self.epoch} starts from its beginning", stacklevel=2)
            return
        self.consumed = {int(k): v for k, v in mine["consumed"].items()}
        self.last_role, self.ended = mine["last_role"], set(mine["ended"])
