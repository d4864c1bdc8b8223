"""The tiny recipe through the real CLI: train -> run folder -> eval -> infer (real shards, real TensorBoard)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from paralign.cli import main
from tests.paralign.conftest import tone as _tone


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
    # A second run reuses every generation; here it also asks the judge (the frozen tiny LLM, expected scores), and
    # fits the probe on the train split's clips (as recipes/ravdess.yaml does: other speakers)
    assert main(["eval", "--ckpt", ckpt, *args, "eval.judge=local", "eval.probe_fit=train"]) == 0
    assert len((out / "generations.jsonl").read_text().splitlines()) == len(lines)
    assert json.loads((out / "metrics.json").read_text())["probe"]["fitted_on"] == "train split"
    judge = json.loads((out / "metrics.json").read_text())["judge"]
    emotion_items = sum(json.loads(line)["task"] == "emotion" for line in lines)
    assert judge["id"].startswith("local-expected:") and judge["validation"]["n"] == emotion_items > 0
    assert 5 <= json.loads((out / "metrics.json").read_text())["tasks"]["response"]["metrics"]["judge"]["value"] <= 95
    assert "## LLM judge" in (out / "report.md").read_text()


@pytest.mark.slow
def test_infer_on_own_recordings_and_bad_audio(tiny_run, tmp_path, capsys):
    root, run_dir, _ = tiny_run
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    clip = _tone(tmp_path / "mine.flac", sr=22050)  # another rate, another format
    assert main(["infer", "--ckpt", ckpt, "--audio", str(clip), str(clip), "--task", "emotion",
                 "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.count("mine.flac:") == 2
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000), 16000)
    long = tmp_path / "long.wav"
    sf.write(long, 0.1 * np.sin(np.arange(61 * 8000) / 3), 8000)
    short = _tone(tmp_path / "short.wav", seconds=0.05)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF not really")
    bad = [silent, tmp_path / "nowhere.wav", long, short, tmp_path / "garbage.wav"]
    # one bad file among many cancels nothing: each gets its own line, the others their replies
    with pytest.raises(SystemExit, match=r"^error: 5 of 7 files got no reply"):
        main(["infer", "--ckpt", ckpt, "--audio", str(clip), *map(str, bad), str(clip), "--task", "emotion",
              "--max-new-tokens", "4"])
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == [str(clip), str(clip)]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors[:4] == [f"error: {silent}: silent audio", f"error: {tmp_path / 'nowhere.wav'}: no such file",
                          f"error: {long}: too long (61.0 s; at most 60 s: cut it into shorter clips)",
                          f"error: {short}: too short (0.05 s; at least 0.1 s)"]
    assert errors[4].startswith(f"error: {tmp_path / 'garbage.wav'}: cannot read audio (") and len(errors) == 5


@pytest.mark.slow
def test_infer_takes_a_folders_audio_files_in_name_order(tiny_run, tmp_path, capsys):
    _, run_dir, _ = tiny_run
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.wav", "a.flac", "c.OGG", "sub/d.wav"):
        _tone(folder / name)
    (folder / "notes.txt").write_text("not audio")
    assert main(["infer", "--ckpt", ckpt, "--audio", str(folder), "--task", "emotion", "--max-new-tokens", "2"]) == 0
    replied = [line.split(": ")[0] for line in capsys.readouterr().out.splitlines()]
    assert replied == [str(folder / name) for name in ("a.flac", "b.wav", "c.OGG")]
    with pytest.raises(SystemExit, match="1 of 1 files"):
        main(["infer", "--ckpt", ckpt, "--audio", str(folder / "sub" / "nothing"), "--max-new-tokens", "2"])
    (folder / "empty").mkdir()
    with pytest.raises(SystemExit, match="1 of 1 files"):
        main(["infer", "--ckpt", ckpt, "--audio", str(folder / "empty"), "--max-new-tokens", "2"])
    assert f"error: {folder / 'empty'}: a folder with no .wav, .flac or .ogg file" in capsys.readouterr().err


@pytest.mark.slow
def test_infer_answers_in_batches_and_prints_each_batch_when_done(tiny_run, tmp_path, capsys, monkeypatch):
    from lightning_modules.speech_llm import SpeechLLM

    _, run_dir, _ = tiny_run
    clips = [str(_tone(tmp_path / f"clip{i}.wav", hz=150 + 30 * i)) for i in range(5)]
    generate, calls = SpeechLLM.generate, []

    def spy(self, batch, **options):  # what was printed when each batch started
        calls.append((batch.features.shape[0], capsys.readouterr().out.count("clip")))
        return generate(self, batch, **options)
    monkeypatch.setattr(SpeechLLM, "generate", spy)
    assert main(["infer", "--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--audio", *clips,
                 "--batch-size", "2", "--task", "emotion", "--max-new-tokens", "2"]) == 0
    assert calls == [(2, 0), (2, 2), (1, 2)]
    out, err = capsys.readouterr()
    assert out.count("clip4.wav: ") == 1 and "5/5" in err  # the last reply, and the progress bar at its end


@pytest.mark.slow
def test_infer_choices_read_the_emotion_answer_as_the_likeliest_of_a_closed_set(tiny_run, tmp_path, capsys):
    from paralign.infer import Answerer, Question, load_for_inference, load_wave, user_template

    _, run_dir, _ = tiny_run
    ckpt = str(run_dir / "checkpoints" / "last.ckpt")
    clips = [str(_tone(tmp_path / f"clip{i}.wav", hz=150 + 90 * i)) for i in range(2)]
    assert main(["infer", "--ckpt", ckpt, "--audio", *clips, "--task", "emotion", "--choices", "sad,happy,angry",
                 "--max-new-tokens", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    model, cfg = load_for_inference(ckpt)
    answerer = Answerer(model, cfg, choices=["sad", "happy", "angry"], max_new_tokens=4)
    question = Question(user_template("emotion", None, model.tasks))
    for line, clip in zip(lines, clips):
        (answer,) = answerer.answer([load_wave(clip, 16000)], [[question]])
        assert sum(answer.choices.values()) == pytest.approx(1.0) and set(answer.choices) == {"sad", "happy", "angry"}
        ranked = ", ".join(f"{e} {p:.2f}" for e, p in sorted(answer.choices.items(), key=lambda kv: -kv[1]))
        assert line.endswith(f" [of sad, happy, angry: {answer.choice} ({ranked})]")
    for bad, why in ((["--task", "response"], "give --task emotion"),
                     (["--task", "emotion", "--prompt", "Which?"], "give --task emotion"),
                     (["--task", "emotion", "--choices", "sad,bored"], "unknown emotion 'bored'"),
                     (["--task", "emotion", "--choices", "sad"], "at least two different emotions")):
        args = ["infer", "--ckpt", ckpt, "--audio", clips[0], "--choices", "sad,happy", *bad]
        with pytest.raises(SystemExit, match=why):
            main(args)


def test_infer_asks_the_emotion_question_in_the_phrasing_the_model_was_trained_with():
    from clips.tasks import DEFAULT_INSTRUCTIONS, build_tasks
    from paralign.infer import user_template
    from tests.lightning_modules.conftest import tiny_cfg

    only = "{speech}\nWhat emotion does the speaker's voice express?"
    assert DEFAULT_INSTRUCTIONS["emotion"][0] != only  # the demo trains this one phrasing, not the default first one
    tasks = build_tasks(tiny_cfg({"emotion": {"instructions": [only]}, "response": {}}).tasks)
    assert user_template("emotion", None, tasks) == only
    assert user_template("style", None, tasks) == DEFAULT_INSTRUCTIONS["style"][0]  # a task it was not trained on
    assert user_template("emotion", "Which feeling?", tasks) == "{speech}\nWhich feeling?"


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


def _emodb_layout(root, letters=("W", "F", "T", "N", "L")):
    """Tone clips named and filed as EmoDB releases them (``wav/<speaker><text><emotion><version>.wav``)."""
    (root / "wav").mkdir(parents=True)
    for speaker in ("03", "08"):
        for i, (letter, text) in enumerate(zip(letters, ("a01", "a02", "a04", "a05", "a07"))):
            t = np.arange(16000) / 16000
            sf.write(root / "wav" / f"{speaker}{text}{letter}a.wav",
                     (0.3 * np.sin(2 * np.pi * (140 + 25 * i) * t)).astype(np.float32), 16000)


@pytest.mark.slow
def test_cross_corpus_eval_scores_each_corpus_on_the_shared_emotions_only(tiny_run, tmp_path, capsys):
    root, run_dir, args = tiny_run
    from paralign.evaluation.cross_corpus import evaluate_cross_corpus
    from paralign.model_folder import load_trained
    from paralign.recipe_loading import load_recipe

    ravdess, emodb = tmp_path / "ravdess", tmp_path / "EmoDB"
    # neutral / happy / sad / angry are in the tiny corpus; calm (02) and disgust (07) are not
    _ravdess_layout(ravdess, {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "07": "x"})
    _emodb_layout(emodb)  # angry, happy, sad, neutral, and boredom (no shared label)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    cfg = load_recipe("recipes/tiny.yaml", [f"data.dir={root / 'data'}",
                                            f"eval.cross_corpus=[ravdess={ravdess},emodb={emodb}]"])
    model = load_trained(cfg, ckpt)
    results = evaluate_cross_corpus(cfg, model, ckpt, run_dir)
    assert list(results) == ["ravdess", "emodb"]
    ravdess_emotion, emodb_emotion = (results[n]["tasks"]["emotion"] for n in ("ravdess", "emodb"))
    assert ravdess_emotion["n"] == 2 * 2 * 4  # 2 actors x 2 statements x the 4 shared emotions
    assert emodb_emotion["n"] == 2 * 4  # 2 speakers x the 4 shared emotions (boredom left out)
    assert results["emodb"]["cross_corpus"]["emotions"] == ["angry", "happy", "neutral", "sad"]
    assert set(emodb_emotion["per_emotion"]["accuracy"]) == {"angry", "happy", "neutral", "sad"}
    assert 0.0 <= emodb_emotion["metrics"]["macro_f1"]["value"] <= 1.0
    for name in ("ravdess", "emodb"):
        assert (run_dir / "eval_cross" / name / "report.md").exists()
    rows = [json.loads(line) for line in (run_dir / "eval_cross" / "ravdess" / "generations.jsonl").read_text()
            .splitlines()]
    assert {r["task"] for r in rows} == {"emotion"} and {r["speaker"] for r in rows} == {"Actor_01", "Actor_02"}
    # replies to real speech: no teacher reply to score ROUGE against, the reply emotion measure all the same
    # (it stopped with a KeyError after scoring them)
    from paralign.evaluation.run import evaluate

    shards = results["ravdess"]["cross_corpus"]["shards"]
    replies = load_recipe("recipes/tiny.yaml", [f"data.dir={root / 'data'}", f"data.test=[{shards}]",
                                                "eval.tasks=[response]"])
    scored = evaluate(replies, ckpt, run_dir, model=model, out_name="real_replies")
    assert scored["tasks"]["response"]["metrics"]["reply_emotion_accuracy"]["n"] == 16
    # absent folder: a note, no figure; a folder that is neither shards nor named by its importer: an error
    missing = load_recipe("recipes/tiny.yaml", [f"data.dir={root / 'data'}",
                                                f"eval.cross_corpus=[emodb={tmp_path / 'none'}]"])
    assert evaluate_cross_corpus(missing, model, ckpt, run_dir) == {}
    assert "cross-corpus evaluation of emodb skipped" in capsys.readouterr().out
    unnamed = load_recipe("recipes/tiny.yaml", [f"data.dir={root / 'data'}", f"eval.cross_corpus=[{emodb}]"])
    with pytest.raises(ValueError, match="holds no shards, and 'EmoDB' is no importer"):
        evaluate_cross_corpus(unnamed, model, ckpt, run_dir)


def test_a_run_folder_from_before_cross_corpus_still_loads(tmp_path):
    """eval.real_eval / real_eval_corpus, as earlier run folders' config.yaml hold them, read as one entry."""
    from paralign.recipe_loading import load_recipe

    old = tmp_path / "config.yaml"
    old.write_text("name: old\ntasks: {emotion: {}}\neval:\n  real_eval: /data/RAVDESS\n  real_eval_corpus: ravdess\n")
    assert list(load_recipe(old).eval.cross_corpus) == ["ravdess=/data/RAVDESS"]
    old.write_text("name: old\ntasks: {emotion: {}}\neval:\n  real_eval: null\n  real_eval_corpus: ravdess\n")
    assert list(load_recipe(old).eval.cross_corpus) == []


def test_infer_reads_whispers_words_of_each_file_when_the_model_reads_words(tmp_path, monkeypatch):
    """prompt.content=transcript: each file's transcript (from the transcriber) goes before its speech slot, and the
    answer says what was heard; unreadable files are not transcribed. The transcriber is a stand-in here (the real
    one: tests/lightning_modules/test_whisper.py)."""
    from lightning_modules.speech_llm import SpeechLLM
    from paralign.infer import Answerer, Question
    from tests.lightning_modules.conftest import tiny_cfg

    cfg = tiny_cfg({"response": {}}, prompt={"content": "transcript"}, data={"sample_rate": 16000})
    model = SpeechLLM(cfg).eval()
    seen = {}

    def generate(batch, **_):
        seen["prefixes"] = [model.llm.prompter.tokenizer.decode(p) for p in batch.prefix]
        return ["ok"] * len(batch.prefix)

    monkeypatch.setattr(model, "generate", generate)
    heard = []

    def transcriber(waves):
        heard.append(len(waves))
        return [f"clip of {len(w)} samples" for w in waves]

    good = _tone(tmp_path / "a.wav")
    answerer = Answerer(model, cfg, transcriber)
    (answers,) = answerer.answer_files([str(good), str(tmp_path / "none.wav")], [Question("{speech}")])
    assert heard == [1] and answers[0].heard == "clip of 16000 samples" and answers[0].reply == "ok"
    assert answers[1].error and answers[1].heard is None
    assert "clip of 16000 samples" in seen["prefixes"][0]


def test_inference_trims_and_levels_as_the_model_was_trained(tmp_path):
    """data.trim_silence_db and data.level_dbfs in a model's recipe: a user's recording is trimmed and brought to
    the level before its features, as the loader did to every clip in training."""
    from lightning_modules.speech_llm import SpeechLLM
    from paralign.infer import Answerer, Question
    from tests.lightning_modules.conftest import tiny_cfg

    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)
    hiss = 1e-4 * np.random.default_rng(0).standard_normal(16000)
    wave = np.concatenate([hiss, tone, hiss]).astype(np.float32)
    features = {}
    for db, level in ((None, None), (40.0, None), (40.0, -20.0)):
        cfg = tiny_cfg({"emotion": {}}, data={"sample_rate": 16000, "trim_silence_db": db, "level_dbfs": level})
        answerer = Answerer(SpeechLLM(cfg).eval(), cfg)
        features[db, level] = [answerer._example(gain * wave, Question("{speech}"), None).features
                               for gain in (1.0, 0.05)]
    whole, trimmed, levelled = features[None, None], features[40.0, None], features[40.0, -20.0]
    assert abs(whole[0].shape[0] - trimmed[0].shape[0] - 180) <= 3  # 2 x (1 s - 0.1 s margin) at 100 frames a second
    assert (trimmed[0] - trimmed[1]).median() > 5  # 26 dB quieter: 6 lower (natural log of power), as heard
    # the same voice, whatever the recording's level (to float rounding, which the log magnifies in empty bins)
    assert torch.allclose(levelled[0], levelled[1], atol=0.05)
