"""The tiny recipe through the real CLI: train -> run folder -> eval -> infer (real shards, real TensorBoard)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from paralign.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    run_dir = root / "run"
    args = ["--recipe", "recipes/tiny.yaml", f"run.dir={run_dir}", f"data.dir={root / 'data'}",
            "trainer.max_steps=4", "trainer.val_check_interval=4"]
    assert main(["train", *args]) == 0
    return root, run_dir, args


@pytest.mark.slow
def test_train_writes_the_run_folder(tiny_run):
    _, run_dir, _ = tiny_run
    assert (run_dir / "config.yaml").read_text().startswith("name: tiny")
    assert "git_commit:" in (run_dir / "env.txt").read_text()
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_size < 5e6
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    for task in ("response", "emotion", "asr"):
        assert f"train/{task}/loss" in tags and f"val/{task}/loss" in tags
    assert {"train/loss", "val/loss", "perf/samples_per_s"} <= tags
    assert any(tag.startswith("lr-") for tag in tags)
    assert "val/generations/text_summary" in events.Tags()["tensors"]


@pytest.mark.slow
def test_eval_report_and_resume(tiny_run):
    _, run_dir, args = tiny_run
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    assert main(["eval", "--ckpt", ckpt, *args]) == 0
    out = run_dir / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"emotion", "asr", "response"} <= set(metrics["tasks"])
    lines = (out / "generations.jsonl").read_text().splitlines()
    assert (out / "report.md").exists() and lines
    # A second run reuses every generation; here it also asks the judge (the frozen tiny LLM, expected scores).
    assert main(["eval", "--ckpt", ckpt, *args, "eval.judge=local"]) == 0
    assert len((out / "generations.jsonl").read_text().splitlines()) == len(lines)
    judge = json.loads((out / "metrics.json").read_text())["judge"]
    emotion_items = sum(json.loads(line)["task"] == "emotion" for line in lines)
    assert judge["id"].startswith("local-expected:") and judge["validation"]["n"] == emotion_items > 0
    assert 5 <= json.loads((out / "metrics.json").read_text())["tasks"]["response"]["metrics"]["judge"]["value"] <= 95
    assert "## LLM judge" in (out / "report.md").read_text()


@pytest.mark.slow
def test_infer_on_own_recordings_and_bad_audio(tiny_run, tmp_path, capsys):
    root, run_dir, _ = tiny_run
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    clip = tmp_path / "mine.flac"
    sf.write(clip, 0.3 * np.sin(np.arange(22050) * 2 * np.pi * 200 / 22050), 22050)  # another rate, another format
    assert main(["infer", "--ckpt", ckpt, "--audio", str(clip), str(clip), "--task", "emotion",
                 "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.count("mine.flac:") == 2
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    with pytest.raises(SystemExit, match="silent"):
        main(["infer", "--ckpt", ckpt, "--audio", str(silent)])
