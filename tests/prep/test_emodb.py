"""The EmoDB importer against tone clips named as EmoDB names its files, in the released layout (``wav/``) and in the
development copy's (``speaker_NN/`` + manifest.jsonl): both read alike; boredom and malformed names are counted."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clips.schema import metadata_problems
from clips.vocab import EMOTIONS
from paralign.cli import main
from prep.importers import CorpusLayoutError, emodb, import_corpus

KEPT = {  # file name -> (speaker, gender, emotion, emotion_original, text id)
    "03a01Fa": ("03", "male", "happy", "happiness", "a01"),
    "08b10Tc": ("08", "female", "sad", "sadness", "b10"),
    "16a05Eb": ("16", "female", "disgusted", "disgust", "a05"),
    "10b03Wa": ("10", "male", "angry", "anger", "b03"),
}
BOREDOM = "03a02Lb"
MALFORMED = ("05a01Fa", "03a03Fa", "03a01Xa", "03a01F", "notes")  # speaker 05, text a03, letter X: no EmoDB code


def tone(path: Path, seconds: float = 0.3, sample_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    sf.write(path, 0.3 * np.sin(2 * np.pi * 220 * t), sample_rate)
    return path


def released(root: Path) -> Path:
    """EmoDB as released: ``wav/`` plus label folders that hold no audio."""
    for name in (*KEPT, BOREDOM, *MALFORMED):
        tone(root / "wav" / f"{name}.wav")
    (root / "lablaut").mkdir()
    (root / "lablaut/03a01Fa.lablaut").write_text("not audio")
    return root


def development_copy(root: Path) -> Path:
    """The layout of ../shared/emodb_dev: ``speaker_NN/<EmoDB name>.wav`` and a manifest, boredom already gone."""
    rows = []
    for name in KEPT:
        tone(root / f"speaker_{name[:2]}" / f"{name}.wav")
        rows.append({"path": f"speaker_{name[:2]}/{name}.wav", "speaker": f"emodb_{name[:2]}"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def records_by_name(root: Path) -> dict[str, dict]:
    records = list(import_corpus("emodb", root))
    for record in records:
        assert metadata_problems(record, need_audio_fields=False) == []
        assert Path(record["audio_path"]).is_file()
    return {Path(r["audio_path"]).stem: r for r in records}


def test_released_layout(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = records_by_name(released(tmp_path / "EmoDB"))
    assert set(records) == set(KEPT)
    for name, (speaker, gender, emotion, original, text_id) in KEPT.items():
        record = records[name]
        assert (record["id"], record["speaker"], record["gender"], record["emotion"], record["emotion_original"]) == (
            f"emodb_{name}", speaker, gender, emotion, original)
        assert (record["language"], record["extra"], record["split"]) == (
            "de", {"text_id": text_id, "version": name[-1]}, "train")
        assert record["transcript"] == emodb.SENTENCES[text_id]
        assert (record["valence"], record["style"]) == (None, [])
    assert records["03a01Fa"]["transcript"] == "Der Lappen liegt auf dem Eisschrank."
    # every clip left out is counted with its reason, none is given a guessed label
    assert f"emodb: 1 item(s): {emodb.LEFT_OUT}" in caplog.text
    assert f"emodb: {len(MALFORMED)} item(s): {emodb.NOT_A_CODE}" in caplog.text


def test_development_copy_reads_like_the_release(tmp_path: Path) -> None:
    copy = records_by_name(development_copy(tmp_path / "emodb_dev"))
    release = records_by_name(released(tmp_path / "EmoDB"))
    strip = (lambda record: {k: v for k, v in record.items() if k != "audio_path"})
    assert {name: strip(r) for name, r in copy.items()} == {name: strip(release[name]) for name in copy}


def test_speaker_folder_must_agree_with_the_file_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = development_copy(tmp_path / "emodb_dev")
    tone(root / "speaker_09/03a04Na.wav")
    assert set(records_by_name(root)) == set(KEPT)
    assert "emodb: 1 item(s): speaker in the file name differs from its speaker_NN folder" in caplog.text


def test_not_emodb_is_a_layout_error(tmp_path: Path) -> None:
    tone(tmp_path / "other/wav/1001_DFA_ANG_XX.wav")
    with pytest.raises(CorpusLayoutError, match="does not look like EmoDB"):
        import_corpus("emodb", tmp_path / "other")
    with pytest.raises(CorpusLayoutError, match="is not a directory"):
        import_corpus("emodb", tmp_path / "missing")


def test_label_tables() -> None:
    assert set(emodb.EMOTION_CODES) == set("WLEAFTN")
    shared = {emotion for _, emotion in emodb.EMOTION_CODES.values()}
    assert shared == {None, "angry", "disgusted", "fearful", "happy", "sad", "neutral"} and shared - {None} <= set(
        EMOTIONS)
    assert set(emodb.SENTENCES) == {"a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10"}
    assert sorted(emodb.SPEAKER_GENDERS) == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert sorted(emodb.SPEAKER_GENDERS.values()).count("female") == 5


def test_command_writes_speaker_split_shards(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "shards"
    assert main(["import", "emodb", "--root", str(released(tmp_path / "EmoDB")), "--out", str(out),
                 "--test-speakers", "08,16"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    counts: dict[str, int] = {}
    for shard in manifest["shards"]:
        counts[shard["split"]] = counts.get(shard["split"], 0) + shard["samples"]
    assert counts == {"train": 2, "test": 2}
    with tarfile.open(out / "test-000000.tar") as shard:
        metas = [json.load(shard.extractfile(m)) for m in shard.getmembers() if m.name.endswith(".json")]
    assert sorted((m["id"], m["emotion"], m["language"], m["extra"]["text_id"]) for m in metas) == [
        ("emodb_08b10Tc", "sad", "de", "b10"), ("emodb_16a05Eb", "disgusted", "de", "a05")]
    assert "emodb: 1 item(s): boredom (L)" in caplog.text
