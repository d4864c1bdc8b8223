"""Speaker-disjoint splits for corpora that define none (RAVDESS, CREMA-D, IEMOCAP, a manifest without splits).

A held-out figure is only honest on voices training never heard. Speakers go to ``val`` / ``test`` by name, or by a
deterministic share: each speaker's place comes from a hash of its name and a seed, so a rerun (or a resumed
import) puts every speaker where it was. Every clip of a speaker lands in that speaker's split.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clips.shard_writer import SPLIT_FILE, WriteSummary, write_shards

# Corpora whose release defines a split: theirs is kept (their test speakers are the ones the literature uses).
CORPORA_WITH_SPLIT = frozenset({"esd", "msp-podcast", "expresso"})


@dataclass
class SpeakerSplit:
    val_speakers: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)
    val_share: float = 0.0
    test_share: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        both = set(self.val_speakers) & set(self.test_speakers)
        if both:
            raise ValueError(f"speakers in both --val-speakers and --test-speakers: {', '.join(sorted(both))}")
        if not (0 <= self.val_share and 0 <= self.test_share and self.val_share + self.test_share < 1):
            raise ValueError(f"--val-share {self.val_share} and --test-share {self.test_share} must be >= 0 and "
                             "sum to less than 1")
        if (self.val_speakers or self.test_speakers) and (self.val_share or self.test_share):
            raise ValueError("give speakers by name (--val-speakers / --test-speakers) or by share "
                             "(--val-share / --test-share), not both")

    @property
    def active(self) -> bool:
        return bool(self.val_speakers or self.test_speakers or self.val_share or self.test_share)

    def split_of(self, speaker: str) -> str:
        if speaker in self.test_speakers:
            return "test"
        if speaker in self.val_speakers:
            return "val"
        if self.val_speakers or self.test_speakers:
            return "train"
        digest = hashlib.sha256(f"{self.seed}:{speaker}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        return "test" if u < self.test_share else "val" if u < self.test_share + self.val_share else "train"

    def describe(self) -> dict[str, Any]:
        """What ``manifest.json`` records under ``split``."""
        if self.val_speakers or self.test_speakers:
            return {"method": "by speaker, named", "val_speakers": sorted(self.val_speakers),
                    "test_speakers": sorted(self.test_speakers)}
        return {"method": "by speaker, hashed share", "val_share": self.val_share, "test_share": self.test_share,
                "seed": self.seed}

    def apply(self, records: Iterable[dict[str, Any]], unknown: list[str]) -> Iterator[dict[str, Any]]:
        """The records with their split set by speaker; ids of records without a speaker are appended to
        ``unknown`` (they stay in ``train``: they cannot put a voice in two splits, but no split can hold them out)."""
        for record in records:
            speaker = record.get("speaker")
            if not speaker:
                unknown.append(str(record.get("id")))
                yield {**record, "split": "train"}
                continue
            yield {**record, "split": self.split_of(str(speaker))}


def write_split_shards(records: Iterable[dict[str, Any]], out: Path, split: SpeakerSplit | None, *,
                       fallback_split: str = "train", target_sr: int | None = None) -> tuple[WriteSummary, list[str]]:
    """Write ``records`` as shards in ``out``, split by speaker when ``split`` is active (recorded in
    ``split.json``, which ``manifest.json`` then carries); returns the summary and the ids without a speaker."""
    unknown: list[str] = []
    if split is not None and split.active:
        records = split.apply(records, unknown)
        out.mkdir(parents=True, exist_ok=True)
        (out / SPLIT_FILE).write_text(json.dumps(split.describe(), indent=1) + "\n")
    return write_shards(records, out, split=fallback_split, target_sr=target_sr), unknown
