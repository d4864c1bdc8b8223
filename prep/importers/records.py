"""What every corpus importer shares: building a valid record, layout errors, rescaling, counted issues."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from clips.schema import empty_metadata, metadata_problems

log = logging.getLogger(__name__)

# Splits are normalised to these names where a corpus defines its own ("Development", "evaluation", "dev").
VALIDATION_SPLIT = "val"  # the split name every recipe and loader uses


class CorpusLayoutError(ValueError):
    """The root folder does not look like the corpus that was asked for."""


def require_any(root: Path, pattern: str, corpus: str, example: str) -> list[Path]:
    """The paths under ``root`` matching ``pattern`` (sorted); raise CorpusLayoutError naming the layout if none."""
    if not root.is_dir():
        raise CorpusLayoutError(f"{corpus} root {root} is not a directory")
    found = sorted(root.glob(pattern))
    if not found:
        raise CorpusLayoutError(
            f"{root} does not look like {corpus}: nothing matches {pattern!r} (expected e.g. {example})"
        )
    return found


def make_record(dataset: str, key: str, audio_path: Path, **fields: Any) -> dict[str, Any]:
    """A schema-valid record for one clip; ``duration`` / ``sample_rate`` stay None for the shard writer to measure.

    The id is ``<dataset>_<key>``; it becomes the tar key, so it may hold neither dots (WebDataset splits the
    extension at the first dot) nor slashes. A record that breaks the schema is a bug in the importer's mapping,
    so it raises instead of being written.
    """
    record_id = f"{dataset}_{key}"
    if "." in record_id or "/" in record_id or "\\" in record_id:
        raise ValueError(f"record id {record_id!r} is not a safe tar key (no dots or slashes allowed)")
    record = empty_metadata(id=record_id, dataset=dataset, **fields)
    record["audio_path"] = str(Path(audio_path).absolute())
    problems = metadata_problems(record, need_audio_fields=False)
    if problems:
        raise ValueError(f"{dataset} record {record_id}: {'; '.join(problems)}")
    return record


class IssueTally:
    """Counts, by reason, the items one import skipped or kept with a label missing; logs a summary at the end.

    Each item is logged at debug level; the summary (one warning per reason) keeps a 100k-clip import readable.
    """

    def __init__(self, corpus: str) -> None:
        self.corpus = corpus
        self.counts: Counter[str] = Counter()

    def note(self, reason: str, item: object) -> None:
        self.counts[reason] += 1
        log.debug("%s: %s: %s", self.corpus, reason, item)

    def report(self) -> None:
        for reason, count in sorted(self.counts.items()):
            log.warning("%s: %d item(s): %s", self.corpus, count, reason)


def rescale_to_1_5(value: float | None, low: float, high: float) -> float | None:
    """Map ``value`` on a corpus's ``[low, high]`` rating scale linearly onto ``[1, 5]`` (None stays None).

    A value outside the corpus's own scale is an annotation error, not something to clamp quietly: it raises.
    """
    if value is None:
        return None
    if not low <= value <= high:
        raise ValueError(f"rating {value} outside the corpus scale [{low}, {high}]")
    return 1.0 + 4.0 * (value - low) / (high - low)


def rescale_vad(
    ratings: tuple[float | None, float | None, float | None],
    low: float,
    high: float,
    issues: IssueTally,
    item: object,
) -> dict[str, float | None]:
    """Valence / arousal / dominance fields scaled into [1, 5].

    If any rating lies off the corpus scale, all three become null (counted in ``issues``) and the clip keeps its
    category: one bad dimension makes the triple untrustworthy, the categorical label is still sound.
    """
    try:
        scaled = [rescale_to_1_5(value, low, high) for value in ratings]
    except ValueError:
        issues.note("valence/arousal/dominance off the corpus scale (clip kept, ratings set to null)", item)
        scaled = [None, None, None]
    return dict(zip(("valence", "arousal", "dominance"), scaled))
