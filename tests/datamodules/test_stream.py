import dataclasses
import io
import json
import random
import subprocess
import tarfile

import webdataset as wds
from torch.utils.data import DataLoader

from clips.shard_writer import shard_files, write_shards
from datamodules.batching import padding_ratio
from datamodules.datamodule import ShardDataModule
from datamodules.loader import BatchStream, _identity
from datamodules.stream import expand_sources


def _keys(loader):
    return [k for batch in loader for k in batch["keys"]]


def _all_keys(shard_dir):
    return {s["__key__"] for s in wds.WebDataset([str(p) for p in shard_files(shard_dir)], shardshuffle=False)}


def test_plain_webdataset_reads_our_shards(shard_dir):
    pattern = str(shard_dir / "train-{000000..000003}.tar")
    samples = list(wds.WebDataset(pattern, shardshuffle=False).decode())
    assert len(samples) == 24
    assert set(samples[0]) >= {"__key__", "flac", "json"} and samples[0]["json"]["id"] == "s0.clip0"


def test_our_loader_reads_a_tar_made_wav_json_tar(tmp_path, make_clip):
    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(3):
        make_clip(folder / f"utt{i}.wav", 1.0 + i, seed=i)
        (folder / f"utt{i}.json").write_text(json.dumps({"transcript": f"hello {i}"}))  # no duration, no id
    subprocess.run(["tar", "-cf", str(tmp_path / "plain.tar"), "-C", str(folder)]
                   + [f"utt{i}.{ext}" for i in range(3) for ext in ("wav", "json")], check=True)
    dm = ShardDataModule(val=[str(tmp_path / "plain.tar")], num_workers=0, bucket_window=0)
    (batch,) = list(dm.val_dataloader())
    assert batch["keys"] == ["utt0", "utt1", "utt2"] and batch["duration"] == [1.0, 2.0, 3.0]
    assert batch["meta"][1]["transcript"] == "hello 1" and batch["meta"][1]["id"] == "utt1"
    assert batch["features"].shape == (3, 301, 80) and batch["feature_lens"].tolist() == [101, 201, 301]
    # the same tar through a pipe: command
    (batch,) = list(ShardDataModule(val=f"pipe:cat {tmp_path / 'plain.tar'}", num_workers=0).val_dataloader())
    assert sorted(batch["keys"]) == ["utt0", "utt1", "utt2"]


def _corrupt_shard(path, make_clip, tmp_path):
    """A shard with, in order: a good clip, a bad flac, bad json, a json without audio, a good clip."""
    def flac(seconds, seed):
        return make_clip(tmp_path / f"c{seed}.flac", seconds, seed=seed).read_bytes()
    members = [("good1.flac", flac(1.0, 1)), ("good1.json", b'{"id": "good1"}'),
               ("badflac.flac", b"fLaC but not really"), ("badflac.json", b'{"duration": 1.0}'),
               ("badjson.flac", flac(1.0, 2)), ("badjson.json", b"{not json"),
               ("noaudio.json", b'{"id": "noaudio"}'),
               ("nolabels.flac", flac(1.0, 4)),  # audio but no json: no labels to train on
               ("good2.flac", flac(1.5, 3)), ("good2.json", b'{"id": "good2"}')]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_run_goes_on_past_corrupt_samples_and_counts_them(tmp_path, make_clip, shard_dir):
    _corrupt_shard(tmp_path / "train-000000.tar", make_clip, tmp_path)
    truncated = tmp_path / "train-000001.tar"
    truncated.write_bytes((shard_dir / "train-000000.tar").read_bytes()[:30000])  # cut mid-member
    dm = ShardDataModule(train=[str(tmp_path / "train-000000.tar"), str(truncated), str(shard_dir)],
                         num_workers=2, shuffle_buffer=4, max_batch_size=3)
    loader = dm.train_dataloader()
    keys = _keys(loader)
    assert sorted(keys) == sorted(_all_keys(shard_dir) | {"good1", "good2"})  # nothing lost but the corrupt ones
    assert dm.skip_counts() == {"bad_audio": 1, "bad_json": 1, "missing_audio": 1, "missing_json": 1, "bad_tar": 1}


def _stream_keys(urls, rank, world, workers=2):
    stream = BatchStream([(urls, 1.0)], shuffle=True, shuffle_buffer=5, seed=3, max_batch_size=4)
    stream.rank, stream.world_size = rank, world
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_identity)
    return [k for _, _, batch in loader if batch is not None for k in batch["keys"]]


def test_two_ranks_by_two_workers_read_disjoint_samples_covering_the_set(shard_dir, tmp_path, make_records):
    everything = _all_keys(shard_dir)
    for urls in (expand_sources(str(shard_dir), "train"), expand_sources(str(shard_dir / "train-000000.tar"))):
        per_rank = [_stream_keys(urls, rank, 2) for rank in range(2)]
        seen = per_rank[0] + per_rank[1]
        assert len(seen) == len(set(seen)) and all(per_rank)  # disjoint, and nobody idle
        expected = everything if len(urls) > 1 else _all_keys_of(urls[0])
        assert set(seen) == expected


def _all_keys_of(url):
    return {s["__key__"] for s in wds.WebDataset(url, shardshuffle=False)}


def test_bucketing_lowers_padding(shard_dir):
    ratios = {}
    for window in (0, 24):
        dm = ShardDataModule(train=str(shard_dir), num_workers=0, bucket_window=window, max_batch_size=8,
                             max_batch_seconds=1000, shuffle_buffer=0)
        ratios[window] = padding_ratio([b["feature_lens"].tolist() for b in dm.train_dataloader()])
    assert ratios[24] < ratios[0] / 2


def test_mixing_follows_weights_and_validation_is_deterministic(tmp_path, make_records):
    for name, seed in (("a", 1), ("b", 2)):
        write_shards(make_records(tmp_path / f"w{name}", 16, seed=seed), tmp_path / name, progress=False)
    dm = ShardDataModule(train=[{"shards": str(tmp_path / "a"), "weight": 3.0},
                                {"shards": str(tmp_path / "b"), "weight": 1.0}],
                         val=[str(tmp_path / "a"), str(tmp_path / "b")], val_split="train",
                         num_workers=0, max_batch_size=1, shuffle_buffer=0, bucket_window=0)
    first_16 = _keys(dm.train_dataloader())[:16]
    assert sum(k.startswith("s1_") for k in first_16) >= 10  # about 12 of 16 from the weight-3 dataset
    val = _keys(dm.val_dataloader())
    assert val == _keys(dm.val_dataloader()) and len(val) == 32 == len(set(val))


def test_example_builder_expands_clips_with_a_deterministic_rng(shard_dir):
    @dataclasses.dataclass
    class Tagged:  # what a builder may make of a clip: the loader sets its features, the collate lists the rest
        key: str
        task: str
        draw: float
        features: object = None

    def two_tasks(clip, rng):
        return [Tagged(clip.key, t, rng.random()) for t in ("emotion", "style")]
    runs = []
    for _ in range(2):
        dm = ShardDataModule(train=str(shard_dir), num_workers=2, example_builder=two_tasks, seed=7)
        runs.append([(k, t, d) for b in dm.train_dataloader() for k, t, d in zip(b["keys"], b["task"], b["draw"])])
    assert runs[0] == runs[1] and len(runs[0]) == 48
    assert {t for _, t, _ in runs[0]} == {"emotion", "style"}
    assert random.Random(0).random() not in {d for _, _, d in runs[0]}


def test_samples_named_with_path_parts_are_skipped_and_counted(tmp_path, make_clip):
    """A crafted tar whose members climb out of (or sit outside) the shard: never read as clips, counted."""
    flac = make_clip(tmp_path / "c.flac", 1.0).read_bytes()
    names = ["good1", "../../x", "/abs/y", "sub/../../z", "sub/w", "good2"]
    with tarfile.open(tmp_path / "crafted.tar", "w") as tar:
        for name in names:
            for ext, data in (("flac", flac), ("json", json.dumps({"transcript": "t"}).encode())):
                info = tarfile.TarInfo(f"{name}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with tarfile.open(tmp_path / "crafted.tar") as tar:  # written as named: nothing normalised away
        assert "../../x.json" in tar.getnames() and "/abs/y.json" in tar.getnames()
    dm = ShardDataModule(val=[str(tmp_path / "crafted.tar")], num_workers=0, bucket_window=0)
    (batch,) = list(dm.val_dataloader())
    assert batch["keys"] == ["good1", "sub/w", "good2"]  # a folder prefix is a WebDataset key like any other
    assert dm.skip_counts("val") == {"unsafe_name": 3}
