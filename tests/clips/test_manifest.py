import json

import numpy as np
import pytest
import soundfile as sf

from clips.manifest import MALFORMED, read_manifest
from clips.schema import metadata_problems
from clips.shard_writer import write_shards


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
def test_bad_rows_are_named_by_line_and_do_not_end_the_reading(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content + "b.wav,\n" if "valence" in content else content)
    rows = list(read_manifest(tmp_path / "m.csv"))
    assert rows[0]["id"] == "m.csv:2" and message in rows[0][MALFORMED]
    assert all(MALFORMED not in r for r in rows[1:])


def test_a_malformed_row_is_a_reject_and_a_rerun_lists_it_once(tmp_path):
    sf.write(tmp_path / "a.wav", (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav"}\n{oops\n["a", "list"]\n')
    out = tmp_path / "out"
    for _ in range(2):
        summary = write_shards(read_manifest(tmp_path / "m.jsonl"), out, split="train", progress=False)
        rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
        assert [(r["id"], r["reason"]) for r in rejects] == [("m.jsonl:2", "malformed_row"),
                                                             ("m.jsonl:3", "malformed_row")]
        assert "invalid JSON" in rejects[0]["detail"] and "got list" in rejects[1]["detail"]
    assert summary.already_written == 1 and (out / "manifest.json").exists()
    assert not list(out.glob("*.tmp"))


def test_a_failing_import_leaves_no_tmp_shard(tmp_path):
    sf.write(tmp_path / "a.wav", (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)

    def records():
        yield {**read_one(tmp_path), "id": "first"}
        raise OSError("the disk is full")

    with pytest.raises(OSError):
        write_shards(records(), tmp_path / "out", split="train", progress=False)
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob("*.tar"))
    assert not (tmp_path / "out" / "manifest.json").exists()


def read_one(folder):
    (folder / "one.jsonl").write_text('{"audio": "a.wav"}\n')
    return next(read_manifest(folder / "one.jsonl"))
