"""``paralign export``, ``paralign.load`` / ``--model DIR`` and batch inference, on the tiny run trained through the
CLI (tests/paralign/conftest.py)."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

import paralign
from paralign.cli import main
from paralign.model_folder import ModelFolderError, load_model
from tests.paralign.conftest import tone


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    _, run_dir, _ = tiny_run
    out = tmp_path_factory.mktemp("export") / "tiny-model"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    return run_dir, out


@pytest.mark.slow
def test_export_writes_config_weights_and_card(exported):
    run_dir, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    llm = config["base_models"]["llm"]
    assert llm["name"] == "tiny" and len(llm["sha256"]) == 64 and llm["frozen_parameters"] > 0
    assert config["recipe"]["name"] == "tiny" and config["training"]["global_step"] == 4
    assert set(config["prompt"]["tasks"]) == {"response", "emotion", "asr"}
    assert config["training"]["data"]["shard_folders"][0]["clips_per_split"]["train"] > 0
    # the trained weights only, as the checkpoint holds them: no frozen LLM weight
    weights = load_file(str(out / "model.safetensors"))
    assert weights and not any(k.startswith("llm.") for k in weights)
    assert config["trained"]["parameters"] == sum(v.numel() for v in weights.values())
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: paralign\n") and "## Intended use and limitations" in card
    with pytest.raises(SystemExit, match="exists and is not empty"):
        main(["export", str(run_dir), "--out", str(out)])


@pytest.mark.slow
def test_the_folder_answers_exactly_as_the_checkpoint(exported, tmp_path, capsys):
    run_dir, out = exported
    clips = [str(tone(tmp_path / f"c{i}.wav", hz=150 + 60 * i)) for i in range(3)]
    replies = {}
    for flag, path in (("--ckpt", str(run_dir / "checkpoints" / "last.ckpt")), ("--model", str(out))):
        assert main(["infer", flag, path, "--audio", *clips, "--task", "emotion", "--max-new-tokens", "6"]) == 0
        replies[flag] = capsys.readouterr().out
    assert replies["--ckpt"] == replies["--model"] and replies["--ckpt"].count(".wav: ") == 3
    model = paralign.load(out)
    assert not model.training and all(not p.requires_grad for p in model.llm.parameters())


@pytest.mark.slow
def test_a_wrong_or_missing_base_model_is_refused_in_one_line(exported, tmp_path):
    _, out = exported
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    config = json.loads((out / "config.json").read_text())
    config["recipe"]["llm"]["tiny"]["layers"] = 3  # another base LLM: same name, other weights
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"the base LLM loaded as 'tiny' is not the one this model was "
                                               r"trained on \(tiny; weights sha256 \w+\.\.\., expected") as err:
        load_model(wrong)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelFolderError, match=r"cannot load the base LLM '/nowhere/SmolLM2' \(tiny\) this model "
                                               r"needs: .*; install it, or point at a copy") as err:
        paralign.load(out, ["llm.name=/nowhere/SmolLM2"])
    assert "\n" not in str(err.value)
    (wrong / "model.safetensors").write_bytes(b"not safetensors")
    config["recipe"]["llm"]["tiny"]["layers"] = 2
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="is not a readable safetensors file"):
        load_model(wrong)
    with pytest.raises(SystemExit, match="not a model folder"):
        main(["infer", "--model", str(tmp_path), "--audio", "x.wav"])


@pytest.mark.slow
def test_batch_inference_writes_a_line_per_clip_and_resumes(exported, tmp_path, capsys, caplog):
    _, out = exported
    for i in range(3):
        tone(tmp_path / f"c{i}.wav", hz=150 + 60 * i)
    (tmp_path / "broken.wav").write_bytes(b"RIFF nothing")
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"clip{i}", "audio": f"c{i}.wav"}) + "\n" for i in range(2))
                        + json.dumps({"audio": "broken.wav"}) + "\n")
    replies = tmp_path / "replies.jsonl"
    args = ["infer", "--model", str(out), "--manifest", str(manifest), "--out", str(replies), "--max-new-tokens", "4"]
    assert main(args) == 1  # one clip failed: said, and the others written
    assert "2 clips answered, 1 failed, 0 already" in capsys.readouterr().out
    assert "broken.wav: cannot read audio" in caplog.text
    lines = [json.loads(line) for line in replies.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["clip0", "clip1"]
    assert set(lines[0]["replies"]) == {"response", "emotion", "asr"} and "emotion" in lines[0]["labels"]
    # a rerun answers only what is missing; a clip added to the manifest is answered
    manifest.write_text(manifest.read_text() + json.dumps({"id": "clip2", "audio": "c2.wav"}) + "\n")
    assert main(args) == 1
    assert "1 clips answered, 1 failed, 2 already" in capsys.readouterr().out
    assert [json.loads(line)["id"] for line in replies.read_text().splitlines()] == ["clip0", "clip1", "clip2"]
    # other generation settings never mix into the same file
    with pytest.raises(SystemExit, match="holds replies of another model or other generation settings"):
        main([*args[:-1], "5"])
    with pytest.raises(SystemExit, match=r"other generation settings \(or --choices\)"):
        main([*args, "--task", "emotion", "--choices", "sad,happy"])
    # --choices: the emotion question's closed set on every line
    closed = tmp_path / "closed.jsonl"
    assert main([*args[:5], "--out", str(closed), *args[7:], "--task", "emotion", "--choices", "sad,happy"]) == 1
    for line in map(json.loads, closed.read_text().splitlines()):
        assert set(line["choices"]) == {"sad", "happy"} and sum(line["choices"].values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_eval_of_the_folder_scores_what_the_checkpoint_scores(tiny_run, exported, tmp_path):
    root, run_dir, _ = tiny_run
    _, out = exported
    keys = [f"data.dir={root / 'data'}", "eval.tasks=[emotion]"]
    assert main(["eval", "--model", str(out), "--run-dir", str(tmp_path / "m"), *keys]) == 0
    assert main(["eval", "--recipe", "recipes/tiny.yaml", "--ckpt", str(run_dir / "checkpoints" / "last.ckpt"),
                 "--run-dir", str(tmp_path / "c"), *keys]) == 0

    def replies(folder):
        lines = [json.loads(line) for line in (folder / "eval" / "generations.jsonl").read_text().splitlines()]
        return sorted((r["id"], r["task"], r["reply"]) for r in lines)
    assert replies(tmp_path / "m") == replies(tmp_path / "c") and replies(tmp_path / "m")
    with pytest.raises(SystemExit, match="--model brings its own recipe"):
        main(["eval", "--model", str(out), "--recipe", "recipes/tiny.yaml"])
