"""`paralign bench` on the tiny recipe: every row lands in the JSON and each ratio is its two figures' quotient."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from clips.shard_writer import write_shards
from paralign.benchmarks.side_by_side import format_table
from paralign.cli import main
from paralign.recipe_loading import load_recipe
from prep.tiny_corpus import tiny_records

ROOT = Path(__file__).resolve().parents[2]
ROWS = {
    "teacher targets: cached vs on-the-fly", "training step vs bare frozen-LLM floor",
    "LLM fwd+bwd: every row in full vs the shared opening once",
    "padding ratio: bucketed vs plain", "loader throughput: bucketed vs plain",
    "loader alone vs training consumption", "teacher generation: batched vs one at a time",
    "peak memory: training step vs floor", "whisper-tiny.en encoder per clip: real length vs 30 s",
    "resampling 24,414 Hz -> 16 kHz, 3 s clip",
}


@pytest.mark.slow
def test_bench_writes_every_row_with_consistent_ratios(tmp_path: Path, capsys) -> None:
    write_shards(tiny_records(tmp_path / "audio", 12), tmp_path / "shards", max_count=4, progress=False)
    out = tmp_path / "bench.json"
    rc = main(["bench", "--recipe", str(ROOT / "recipes/tiny.yaml"), "--repeats", "1", "--batch-size", "2",
               "--seconds", "0.5", "--prompts", "2", "--shards", str(tmp_path / "shards"), "--out", str(out),
               "--device", "cpu", "--whisper", "whisper-tiny.en", "teacher.max_new_tokens=3", "teacher.batch_size=2"])
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
    # both teacher sides train CE + KL; the cached one on top-k from a real teacher pass
    assert by_name["teacher targets: cached vs on-the-fly"]["a"].startswith("cached top-8")
    assert report["details"]["training"]["loss"] == "ce+kl (response task)"
    assert report["details"]["teacher"]["prompts"] == 2  # --prompts given; default: teacher.batch_size
    whisper = report["details"]["whisper"]
    assert whisper["convert_s"] > 0 and whisper["real_s"] > 0 and whisper["padded_s"] > 0
    printed = capsys.readouterr().out
    assert format_table(report) in printed


def test_bench_rejects_missing_shards(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such file"):
        main(["bench", "--shards", str(tmp_path / "absent"), "--out", str(tmp_path / "b.json")])


def test_interleaved_timings_take_turns_in_a_rotating_order() -> None:
    from paralign.benchmarks.timing import interleaved_timings

    calls: list[str] = []
    times = interleaved_timings({n: (lambda n=n: calls.append(n)) for n in "abc"}, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then one turn per repeat
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_loader_rates_leave_the_first_batch_out(tmp_path: Path) -> None:
    from paralign.benchmarks.loader import loader_benchmark

    write_shards(tiny_records(tmp_path / "audio", 12), tmp_path / "shards", max_count=4, progress=False)
    report = loader_benchmark(str(tmp_path / "shards"), num_workers=0, bucket_window=4, max_batch_size=2)
    for side in ("bucketed", "plain"):
        r = report[side]
        # every train clip is read; the first batch (2 clips here) only times the start-up
        assert r["samples"] == 8 - 2 and r["batches"] == 4 and r["startup_s"] >= 0, r
        assert r["samples_per_s"] > 0 and 0 <= r["padding_ratio"] < 1
    with pytest.raises(ValueError, match="fewer than 2 batches"):
        loader_benchmark(str(tmp_path / "shards"), num_workers=0, max_batch_size=32)


def test_bench_parts_run_alone_from_the_cli(tmp_path: Path, capsys) -> None:
    write_shards(tiny_records(tmp_path / "audio", 12), tmp_path / "shards", max_count=4, progress=False)
    tiny = str(ROOT / "recipes/tiny.yaml")
    assert main(["bench", "--recipe", tiny, "--part", "loader", "--shards", str(tmp_path / "shards"),
                 "--bucket-window", "4", "data.max_batch_size=2"]) == 0
    loader = json.loads(capsys.readouterr().out)
    assert loader["bucketed"]["samples"] == loader["plain"]["samples"] == 8 - 2
    assert main(["bench", "--recipe", tiny, "--part", "teacher", "--prompts", "3", "--device", "cpu",
                 "teacher.batch_size=2", "teacher.max_new_tokens=2"]) == 0
    teacher = json.loads(capsys.readouterr().out)
    assert teacher["llm"] == "tiny" and teacher["compared"] == 3 and teacher["batched"]["replies_per_s"] > 0
    with pytest.raises(SystemExit, match="--part loader needs --shards"):
        main(["bench", "--recipe", tiny, "--part", "loader", f"data.dir={tmp_path / 'none'}"])


def test_bench_scale_trains_the_recipe_model_at_full_size_and_sets_it_beside_the_dry_run(
        tmp_path: Path, capsys) -> None:
    out = tmp_path / "scale.json"
    assert main(["bench", "--recipe", str(ROOT / "recipes/tiny.yaml"), "--part", "scale", "--steps", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert "scale: recipe 'tiny'" in printed and "estimate:" in printed
    assert len(report["step_s_all"]) == 2 and report["step_s"] > 0
    assert len(report["losses"]) == 5 and all(math.isfinite(x) for x in report["losses"])
    batch = report["batch"]
    assert batch["rows"] == 4 and batch["seconds"] == pytest.approx(2.0)  # tiny: 8 s over at most 4 rows
    cfg = load_recipe(ROOT / "recipes/tiny.yaml")
    longest = max(t.max_target_tokens for t in cfg.tasks.values() if t.enabled)
    assert batch["speech_tokens"] > 0 and batch["reply_tokens"] == longest  # the dry run's assumption too
    assert cfg.tasks[batch["task"]].max_target_tokens == longest
    assert report["trainable_parameters"] > 0 and report["estimate_total_gib"] > 0
    assert report["llm_tokens_per_s"] == pytest.approx(
        batch["rows"] * (batch["speech_tokens"] + batch["prompt_tokens"] + batch["reply_tokens"]) / report["step_s"])
