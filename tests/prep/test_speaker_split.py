"""Speaker-disjoint splits at import (`paralign import ... --val-speakers / --test-speakers / --*-share`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clips.shard_writer import iter_shard_metadata, shard_files
from paralign.cli import main
from prep.importers.speaker_split import SpeakerSplit


def _ravdess(root: Path, actors: int = 6) -> Path:
    t = np.arange(8000) / 16000
    for a in range(1, actors + 1):
        for emotion in ("01", "03", "04", "05"):
            for statement in ("01", "02"):
                path = root / f"Actor_{a:02d}" / f"03-01-{emotion}-01-{statement}-01-{a:02d}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, (0.2 * np.sin(2 * np.pi * (100 + 10 * a) * t)).astype(np.float32), 16000)
    return root


def _speakers_by_split(out: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for _, meta in iter_shard_metadata(shard_files(out)):
        found.setdefault(meta["split"], set()).add(meta["speaker"])
    return found


def _assert_disjoint(found: dict[str, set[str]]) -> None:
    splits = list(found)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not found[a] & found[b], (a, b, found[a] & found[b])


def test_named_speakers_go_to_their_splits_and_the_manifest_says_how(tmp_path):
    corpus, out = _ravdess(tmp_path / "ravdess"), tmp_path / "shards"
    assert main(["import", "ravdess", "--root", str(corpus), "--out", str(out), "--val-speakers", "Actor_05",
                 "--test-speakers", "Actor_06"]) == 0
    found = _speakers_by_split(out)
    assert found == {"train": {f"Actor_0{i}" for i in range(1, 5)}, "val": {"Actor_05"}, "test": {"Actor_06"}}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == {"method": "by speaker, named", "val_speakers": ["Actor_05"],
                                 "test_speakers": ["Actor_06"]}
    assert manifest["speakers_per_split"]["test"] == ["Actor_06"]
    # a rerun into the same folder writes nothing twice and keeps the split
    assert main(["import", "ravdess", "--root", str(corpus), "--out", str(out), "--val-speakers", "Actor_05",
                 "--test-speakers", "Actor_06"]) == 0
    assert sum(1 for _ in iter_shard_metadata(shard_files(out))) == 6 * 8


def test_a_hashed_share_is_deterministic_and_never_splits_a_speaker(tmp_path):
    corpus = _ravdess(tmp_path / "ravdess", actors=12)
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["import", "ravdess", "--root", str(corpus), "--out", str(out), "--val-share", "0.2",
                     "--test-share", "0.2", "--split-seed", "3"]) == 0
        runs.append(_speakers_by_split(out))
        _assert_disjoint(runs[-1])
    assert runs[0] == runs[1] and sum(len(v) for v in runs[0].values()) == 12
    split = SpeakerSplit(val_share=0.2, test_share=0.2, seed=3)
    counts = {s: sum(split.split_of(f"spk{i}") == s for i in range(2000)) for s in ("train", "val", "test")}
    assert abs(counts["test"] / 2000 - 0.2) < 0.03 and abs(counts["val"] / 2000 - 0.2) < 0.03


def test_bad_speaker_options_are_one_line_errors(tmp_path):
    corpus = _ravdess(tmp_path / "ravdess", actors=2)
    args = ["import", "ravdess", "--root", str(corpus), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="in both"):
        main([*args, "--val-speakers", "Actor_01", "--test-speakers", "Actor_01"])
    with pytest.raises(SystemExit, match="not both"):
        main([*args, "--val-speakers", "Actor_01", "--test-share", "0.1"])
    with pytest.raises(SystemExit, match="excludes a speaker split"):
        main([*args, "--split", "test", "--test-speakers", "Actor_01"])
    with pytest.raises(SystemExit, match="defines its own split"):
        main(["import", "esd", "--root", str(corpus), "--out", str(tmp_path / "e"), "--test-speakers", "0011"])
