"""The QA benchmark format: importer (one test sample per question), its errors, and the demo exporter."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from clips.shard_writer import shard_files
from clips.tar_samples import iter_tar_samples
from paralign.cli import main
from prep.qa_bench import import_benchmark, read_benchmark


def write_bench(folder, lines):
    (folder / "clips").mkdir(exist_ok=True)
    sf.write(folder / "clips" / "a.wav", 0.3 * np.sin(np.arange(16000) / 8.0), 16000)
    path = folder / "bench.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" if isinstance(x, dict) else x + "\n" for x in lines))
    return path


GOOD = [
    {"audio": "clips/a.wav", "question": "What does she ask for?", "answer": "A glass of water.", "type": "content",
     "transcript": "could I have some water", "gender": "female"},
    {"audio": "clips/a.wav", "question": "How should I respond?", "answer": "Calmly, she is upset.",
     "type": "Content + Emotion", "emotion": "angry", "valence": 1.5},
    {"id": "q3", "audio": "clips/missing.wav", "question": "Who speaks?", "answer": "A woman.",
     "type": "content+gender"},
]


def test_import_writes_one_test_sample_per_question(tmp_path):
    path = write_bench(tmp_path, GOOD)
    summary = import_benchmark(path, tmp_path / "shards")
    assert summary.kept == {"test": 2} and summary.rejected == {"missing_audio_file": 1}
    samples = [s for shard in shard_files(tmp_path / "shards", "test") for s in iter_tar_samples(open(shard, "rb"))]
    metas = [json.loads(s["json"]) for s in samples]
    qas = [json.loads(s["qa.json"]) for s in samples]
    assert [m["id"] for m in metas] == ["bench-00001", "bench-00002"]
    assert metas[0]["gender"] == "female" and metas[1]["emotion"] == "angry" and metas[1]["valence"] == 1.5
    assert [q[0]["type"] for q in qas] == ["content", "content+emotion"]
    assert qas[1][0] == {"question": "How should I respond?", "answer": "Calmly, she is upset.",
                         "type": "content+emotion", "source": "benchmark:bench"}


@pytest.mark.parametrize("line, message", [
    ("{not json", "bench.jsonl:2: not JSON"),
    ('{"audio": "a.wav", "question": "Q?", "answer": "A.", "type": "trivia"}', "type 'trivia' is not one of"),
    ('{"audio": "a.wav", "question": "", "answer": "A.", "type": "content"}', "'question' must be a non-empty"),
    ('{"audio": "a.wav", "question": "Q?", "answer": "A.", "type": "content", "mood": 1}', "unknown keys mood"),
])
def test_bad_lines_are_named(tmp_path, line, message):
    path = write_bench(tmp_path, [GOOD[0], line])
    with pytest.raises(ValueError, match=message):
        list(read_benchmark(path))
    with pytest.raises(SystemExit, match=message):
        main(["qa-bench", "import", "--jsonl", str(path), "--out", str(tmp_path / "s")])


def test_export_round_trips_through_the_importer(tmp_path):
    shards = tmp_path / "shards"
    import_benchmark(write_bench(tmp_path, GOOD[:2]), shards)
    assert main(["qa-bench", "export", "--shards", str(shards), "--out", str(tmp_path / "out")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "benchmark.jsonl").read_text().splitlines()]
    # the stored pairs plus one content+gender question for the clip whose gender is known
    assert [r["type"] for r in rows] == ["content", "content+gender", "content+emotion"]
    assert rows[1]["answer"] == 'A woman. They say: "could I have some water"'
    again = import_benchmark(tmp_path / "out" / "benchmark.jsonl", tmp_path / "again")
    assert again.kept == {"test": 3}
