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
    with pytest.raises(SystemExit, match="nowhere.wav: no such file"):
        main(["infer", "--ckpt", ckpt, "--audio", str(tmp_path / "nowhere.wav")])
    long = tmp_path / "long.wav"
    sf.write(long, 0.1 * np.sin(np.arange(61 * 8000) / 3), 8000)
    with pytest.raises(SystemExit, match=r"too long \(61.0 s; at most 60 s"):
        main(["infer", "--ckpt", ckpt, "--audio", str(long)])


def _ravdess_layout(root, emotions: dict[str, str], actors=("01", "02")):
    """Tone clips named and filed as RAVDESS releases them (``Actor_NN/03-01-EE-01-SS-01-NN.wav``)."""
    for actor in actors:
        (root / f"Actor_{actor}").mkdir(parents=True)
        for code in emotions:
            for statement in ("01", "02"):
                t = np.arange(16000) / 16000
                wave = 0.3 * np.sin(2 * np.pi * (120 + 20 * int(code)) * t)
                sf.write(root / f"Actor_{actor}" / f"03-01-{code}-01-{statement}-01-{actor}.wav",
                         wave.astype(np.float32), 16000)


@pytest.mark.slow
def test_real_speech_eval_scores_the_shared_emotions_only(tiny_run, tmp_path, capsys):
    root, run_dir, args = tiny_run
    from paralign.config import load_recipe
    from paralign.evaluate import load_trained
    from paralign.real_eval import evaluate_real

    corpus = tmp_path / "ravdess"
    # neutral / happy / sad / angry are in the tiny corpus; calm (02) and disgust (07) are not
    _ravdess_layout(corpus, {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "07": "x"})
    cfg = load_recipe("recipes/tiny.yaml", [f"data.dir={root / 'data'}", f"eval.real_eval={corpus}"])
    model = load_trained(cfg, run_dir / "checkpoints" / "last.ckpt")
    metrics = evaluate_real(cfg, model, run_dir)
    emotion = metrics["tasks"]["emotion"]
    assert emotion["n"] == 2 * 2 * 4  # 2 actors x 2 statements x the 4 shared emotions
    assert metrics["real_eval"]["emotions"] == ["angry", "happy", "neutral", "sad"]
    assert 0.0 <= emotion["metrics"]["accuracy"]["value"] <= 1.0
    assert (run_dir / "eval_real" / "report.md").exists()
    rows = [json.loads(line) for line in (run_dir / "eval_real" / "generations.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows} == {"emotion"} and {r["speaker"] for r in rows} == {"Actor_01", "Actor_02"}
    # absent folder: a note, no figure
    missing = load_recipe("recipes/tiny.yaml", [f"data.dir={root / 'data'}", f"eval.real_eval={tmp_path / 'none'}"])
    assert evaluate_real(missing, model, run_dir) is None
    assert "real-speech evaluation skipped" in capsys.readouterr().out
