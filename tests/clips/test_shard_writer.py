import argparse
import json
import os
import signal
import tarfile

import numpy as np
import pytest
import soundfile as sf

from clips.schema import empty_metadata
from clips.shard_writer import rewrite_shards, shard_files, write_shards
from datamodules.stream import expand_sources
from paralign.commands import shards


def _bad_records(tmp_path, make_clip):
    """One record per reject reason, keyed by the reason it must produce."""
    sr = 16000
    paths = {}
    for name, wave, subtype in [("empty", np.zeros(0), "PCM_16"), ("short", np.full(800, 0.1), "PCM_16"),
                                ("long", np.full(sr * 5, 0.1), "PCM_16"), ("silent", np.zeros(sr), "PCM_16"),
                                ("nan", np.full(sr, np.nan), "FLOAT")]:
        paths[name] = tmp_path / f"{name}.wav"
        sf.write(paths[name], wave, sr, subtype=subtype)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF not really")
    good = str(make_clip(tmp_path / "good.wav", 1.0))

    def rec(i, **kw):
        return empty_metadata(id=f"r{i}", dataset="t", split="train", audio_path=good, transcript="hi") | kw
    return {
        "empty_audio": rec(1, audio_path=str(paths["empty"])),
        "too_short": rec(2, audio_path=str(paths["short"])),
        "too_long": rec(3, audio_path=str(paths["long"])),
        "silent_audio": rec(4, audio_path=str(paths["silent"])),
        "non_finite_audio": rec(5, audio_path=str(paths["nan"])),
        "unreadable_audio": rec(6, audio_path=str(tmp_path / "garbage.wav")),
        "missing_audio_file": rec(7, audio_path=str(tmp_path / "nowhere.wav")),
        "unknown_emotion": rec(8, emotion="elated"),
        "bad_metadata": rec(9, valence=7.0),
        "missing_transcript": rec(10, transcript=None),
        "no_split": rec(11, split=None),
        "duplicate_id": rec(0),
    }


def test_every_reject_reason_is_counted_and_listed(tmp_path, make_clip):
    bad = _bad_records(tmp_path, make_clip)
    good = empty_metadata(id="r0", dataset="t", split="train", audio_path=bad["duplicate_id"]["audio_path"],
                          transcript="hi", emotion="happy")
    out = tmp_path / "out"
    summary = write_shards([good, *bad.values()], out, max_seconds=4.0, require_transcript=True, progress=False)
    assert dict(summary.rejected) == {reason: 1 for reason in bad}
    assert summary.kept == {"train": 1}
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["reason"]: r["id"] for r in rejects} == {reason: rec["id"] for reason, rec in bad.items()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"] == [{"name": "train-000000.tar", "split": "train", "samples": 1}]
    assert manifest["labels"]["emotion"] == {"happy": 1}


def test_shards_are_standard_tars_bounded_by_count_with_resampled_flac(tmp_path, make_records):
    records = make_records(tmp_path / "a", 7, split=None)
    records[0]["teacher"] = {"response": {"reply": "ok"}}
    summary = write_shards(records, tmp_path / "out", split="dev", max_count=3, target_sr=8000, progress=False)
    assert [p.name for p in shard_files(tmp_path / "out")] == ["dev-000000.tar", "dev-000001.tar", "dev-000002.tar"]
    assert summary.shards == ["dev-000000.tar", "dev-000001.tar", "dev-000002.tar"]
    with tarfile.open(tmp_path / "out" / "dev-000000.tar") as tar:
        names = tar.getnames()
        meta = json.load(tar.extractfile(names[1]))
        data, sr = sf.read(tar.extractfile(names[0]))
    key = names[0].split(".")[0]
    assert names[:3] == [f"{key}.flac", f"{key}.json", f"{key}.teacher.json"] and "." not in key
    assert meta["id"] == "s0.clip0" and meta["split"] == "dev" and sr == 8000 == meta["sample_rate"]
    assert meta["duration"] == pytest.approx(data.size / 8000, abs=1e-6)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["samples"] for s in manifest["shards"]] == [3, 3, 1] and manifest["samples"] == 7
    assert manifest["hours"]["dev"] > 0 and manifest["labels"]["speakers"] == ["spk0", "spk1", "spk2"]


def test_leftover_temp_file_is_not_a_shard_and_rerun_resumes(tmp_path, make_records):
    records = make_records(tmp_path / "a", 5)
    out = tmp_path / "out"
    write_shards(records[:3], out, max_count=2, progress=False)
    (out / "train-000002.tar.tmp").write_bytes(b"half a shard")  # an interrupted write
    assert [p.name for p in shard_files(out)] == ["train-000000.tar", "train-000001.tar"]
    assert expand_sources(str(out), "train") == [str(out / "train-000000.tar"), str(out / "train-000001.tar")]
    summary = write_shards(records, out, max_count=2, progress=False)
    assert summary.already_written == 3 and summary.kept == {"train": 2}
    assert summary.shards == ["train-000002.tar"] and not list(out.glob("*.tmp"))
    assert json.loads((out / "manifest.json").read_text())["samples"] == 5
    again = write_shards(records, out, max_count=2, progress=False)
    assert again.already_written == 5 and again.shards == []
    with pytest.raises(FileExistsError, match="already holds 3 shards"):
        write_shards(records, out, resume=False, progress=False)


def test_rewrite_shards_adds_members_atomically(tmp_path, shard_dir):
    calls = []

    def add(batch):
        calls.append(len(batch))
        return [{"teacher.json": json.dumps({"reply": meta["id"]}).encode()} for _, meta in batch]
    written = rewrite_shards(shard_dir, tmp_path / "teach", add, batch_size=4, progress=False)
    assert [p.name for p in written] == [p.name for p in shard_files(shard_dir)]
    assert calls == [4, 2] * 4
    with tarfile.open(written[0]) as tar:
        names = tar.getnames()
        teacher = json.load(tar.extractfile(names[2]))
        meta = json.load(tar.extractfile(names[1]))
    assert names[2].endswith(".teacher.json") and teacher == {"reply": meta["id"]}
    assert rewrite_shards(shard_dir, tmp_path / "teach", add, progress=False) == []  # resumes: all done

    def broken(batch):
        raise RuntimeError("teacher crashed")
    with pytest.raises(RuntimeError):
        rewrite_shards(shard_dir, tmp_path / "t2", broken, progress=False)
    assert list((tmp_path / "t2").iterdir()) == []  # no half shard left behind


def test_cli_writes_shards_from_a_csv_manifest(tmp_path, make_clip):
    make_clip(tmp_path / "a.wav", 1.0)
    (tmp_path / "m.csv").write_text("audio,emotion,transcript\na.wav,calm,hi\nmissing.wav,calm,hi\n")
    parser = argparse.ArgumentParser()
    shards.register(parser.add_subparsers())
    args = parser.parse_args(["shards", "write", "--manifest", str(tmp_path / "m.csv"), "--out",
                              str(tmp_path / "out"), "--split", "train", "--sample-rate", "8000"])
    assert args.func(args) == 0
    assert [p.name for p in shard_files(tmp_path / "out")] == ["train-000000.tar"]
    args = parser.parse_args(["shards", "write", "--manifest", str(tmp_path / "nope.csv"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="does not exist"):
        args.func(args)


def _records_with_duplicates(tmp_path, make_records):
    """Five good records plus rows sharing an id: a second copy of a written one, and an unreadable first row
    whose id a later readable row repeats."""
    records = make_records(tmp_path / "a", 5)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF not really")
    unreadable = records[3] | {"id": "again", "audio_path": str(tmp_path / "garbage.wav")}
    return [records[0], records[1], records[1] | {"transcript": "the same id twice"}, unreadable,
            records[2], records[3] | {"id": "again"}, records[4]]


def _rejects(out):
    return (out / "rejects.jsonl").read_text().splitlines()


def test_a_rerun_lists_the_same_rejects(tmp_path, make_records):
    records = _records_with_duplicates(tmp_path, make_records)
    out = tmp_path / "out"
    first = write_shards(records, out, max_count=2, progress=False)
    rejects = _rejects(out)
    again = write_shards(records, out, max_count=2, progress=False)
    assert _rejects(out) == rejects and again.rejected == first.rejected
    # the first row of an id stands for it, written or not: the readable "again" comes after an unreadable one
    assert [(json.loads(line)["id"], json.loads(line)["reason"]) for line in rejects] == [
        ("s0.clip1", "duplicate_id"), ("again", "unreadable_audio"), ("again", "duplicate_id")]
    assert first.kept == {"train": 4} and again.already_written == 4 and not again.kept
    # an import cut short, then rerun: the same rejects as the uninterrupted one
    cut = tmp_path / "cut"

    def until_cut(n):
        yield from records[:n]
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        write_shards(until_cut(5), cut, max_count=1, progress=False)
    resumed = write_shards(records, cut, max_count=1, progress=False)
    assert resumed.already_written == 2 and _rejects(cut) == rejects and not list(cut.glob("*.tmp"))


def test_a_sigterm_mid_rewrite_removes_the_unfinished_shard_and_restores_the_handler(tmp_path, shard_dir):
    """A teacher run stopped by its scheduler (in-process: the test's own handler stands for the previous one)."""
    def ours(signum, frame):
        raise AssertionError("the writer's own handler should have taken the signal")
    previous = signal.signal(signal.SIGTERM, ours)

    def add(batch):
        os.kill(os.getpid(), signal.SIGTERM)  # mid-shard: the first shard's .tmp is open
        return [{} for _ in batch]
    try:
        with pytest.raises(SystemExit) as stop:
            rewrite_shards(shard_dir, tmp_path / "teach", add, progress=False)
        assert signal.getsignal(signal.SIGTERM) is ours  # the previous handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stop.value.code == 128 + signal.SIGTERM and list((tmp_path / "teach").iterdir()) == []
