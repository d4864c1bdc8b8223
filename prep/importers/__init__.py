"""Corpus importers: each reads one corpus's own layout and label files, as released, into records.

A record is ``clips.schema`` metadata plus ``audio_path`` (absolute), with ``duration`` / ``sample_rate``
left None for the shard writer to measure. Labels are mapped onto ``clips.vocab`` (the corpus's own label
kept in ``emotion_original``); what a corpus does not annotate stays None. Each module's docstring says where
every field comes from and which split it gets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from clips.manifest import read_manifest
from prep.importers.cremad import import_cremad
from prep.importers.emodb import import_emodb
from prep.importers.esd import import_esd
from prep.importers.expresso import import_expresso
from prep.importers.iemocap import import_iemocap
from prep.importers.msp_podcast import import_msp_podcast
from prep.importers.ravdess import import_ravdess
from prep.importers.records import CorpusLayoutError

MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv")


def import_manifest(root: Path) -> Iterator[dict[str, Any]]:
    """Records of a generic JSONL / CSV manifest; ``root`` is the manifest file itself."""
    if not root.is_file() or root.suffix.lower() not in MANIFEST_SUFFIXES:
        raise CorpusLayoutError(f"{root} is not a manifest file (expected a {' / '.join(MANIFEST_SUFFIXES)} file)")
    return read_manifest(root)


IMPORTERS: dict[str, Callable[[Path], Iterator[dict[str, Any]]]] = {
    "esd": import_esd,
    "ravdess": import_ravdess,
    "cremad": import_cremad,
    "emodb": import_emodb,
    "iemocap": import_iemocap,
    "msp-podcast": import_msp_podcast,
    "expresso": import_expresso,
    "manifest": import_manifest,
}


def import_corpus(name: str, root: str | Path) -> Iterator[dict[str, Any]]:
    """The records of corpus ``name`` found under ``root``.

    Raises ValueError for an unknown name and CorpusLayoutError (a ValueError) at once, before any record, when
    ``root`` does not look like that corpus.
    """
    if name not in IMPORTERS:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(IMPORTERS)}")
    return IMPORTERS[name](Path(root).expanduser())


__all__ = ["IMPORTERS", "CorpusLayoutError", "import_corpus"]
