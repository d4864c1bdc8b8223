"""`paralign bench` on the tiny recipe: every row lands in the JSON and each ratio is its two figures' quotient."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from datamodules.shard_writer import write_shards
from datamodules.tiny_corpus import tiny_records
from paralign.bench import format_table
from paralign.cli import main

ROOT = Path(__file__).resolve().parents[2]
ROWS = {
    "teacher targets: cached vs on-the-fly", "training step vs bare frozen-LLM floor",
    "padding ratio: bucketed vs plain", "loader throughput: bucketed vs plain",
    "loader alone vs training consumption", "teacher generation: batched vs one at a time",
    "peak memory: training step vs floor",
}


@pytest.mark.slow
def test_bench_writes_every_row_with_consistent_ratios(tmp_path: Path, capsys) -> None:
    write_shards(tiny_records(tmp_path / "audio", 12), tmp_path / "shards", max_count=4, progress=False)
    out = tmp_path / "bench.json"
    rc = main(["bench", "--recipe", str(ROOT / "recipes/tiny.yaml"), "--repeats", "1", "--batch-size", "2",
               "--seconds", "0.5", "--prompts", "2", "--shards", str(tmp_path / "shards"), "--out", str(out),
               "--device", "cpu", "teacher.max_new_tokens=3", "teacher.batch_size=2"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert {r["name"] for r in report["rows"]} == ROWS
    assert report["notes"] == []
    for r in report["rows"]:
        assert r["a_value"] > 0 and r["b_value"] >= 0, r
        assert math.isclose(r["ratio"], r["a_value"] / r["b_value"], rel_tol=1e-9), r
    by_name = {r["name"]: r for r in report["rows"]}
    # The loader row compares against the very training step the first rows measured.
    step_s = report["details"]["step_seconds"]["cached"]["median"]
    assert math.isclose(by_name["loader alone vs training consumption"]["b_value"], 2 * 0.5 / step_s)
    assert math.isclose(by_name["teacher targets: cached vs on-the-fly"]["a_value"], 2 / step_s)
    assert 0 <= by_name["padding ratio: bucketed vs plain"]["a_value"] < 1
    printed = capsys.readouterr().out
    assert format_table(report) in printed


def test_bench_rejects_missing_shards(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such file"):
        main(["bench", "--shards", str(tmp_path / "absent"), "--out", str(tmp_path / "b.json")])
