import json

import pytest

from datamodules.manifest import read_manifest
from datamodules.schema import metadata_problems


def test_jsonl_manifest_resolves_paths_and_keeps_extra(tmp_path):
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio": "wav/a.wav", "emotion": "sad", "style": ["fast"], "valence": 2.5, "corpus_tag": "x"})
        + "\n\n" + json.dumps({"audio_path": "/abs/b.flac", "id": "B", "split": "test"}) + "\n")
    first, second = read_manifest(tmp_path / "m.jsonl")
    assert first["audio_path"] == str((tmp_path / "wav" / "a.wav").resolve())
    assert first["id"] == "a" and first["dataset"] == "m" and first["emotion"] == "sad"
    assert first["valence"] == 2.5 and first["extra"] == {"corpus_tag": "x"} and first["transcript"] is None
    assert second["id"] == "B" and second["audio_path"] == "/abs/b.flac" and second["split"] == "test"
    assert metadata_problems({**first, "split": "train"}, need_audio_fields=False) == []  # the writer sets split


def test_csv_manifest_parses_numbers_styles_and_empties(tmp_path):
    (tmp_path / "m.csv").write_text(
        "path,transcript,emotion,style,arousal,duration,sample_rate,speaker\n"
        "a.wav,hello there,angry,loud; fast,4.5,1.25,16000,\n")
    (record,) = read_manifest(tmp_path / "m.csv", dataset="mine")
    assert record["style"] == ["loud", "fast"] and record["arousal"] == 4.5
    assert record["duration"] == 1.25 and record["sample_rate"] == 16000 and record["speaker"] is None
    assert record["dataset"] == "mine" and record["transcript"] == "hello there"


@pytest.mark.parametrize("content,message", [
    ("transcript\nhi\n", "no audio path"),
    ("audio,valence\na.wav,high\n", "'valence'"),
])
def test_bad_rows_name_the_line(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ValueError, match=f"m.csv:2: .*{message}"):
        list(read_manifest(tmp_path / "m.csv"))


def test_bad_json_line_is_named(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav"}\n{oops\n')
    with pytest.raises(ValueError, match="m.jsonl:2: invalid JSON"):
        list(read_manifest(tmp_path / "m.jsonl"))
