"""Recipes: unknown keys, wrong types and kinds, values out of range are errors naming the key and the file or the
command-line override that set it; overrides apply last."""
from __future__ import annotations

from pathlib import Path

import pytest

from paralign.cli import main
from paralign.recipe_loading import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "name: x\nencoder:\n  layerz: 3\n")
    with pytest.raises(RecipeError, match=r"r\.yaml.*encoder\.layerz"):
        load_recipe(path)


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path, "name: x\ntrainer:\n  max_steps: many\n")
    with pytest.raises(RecipeError, match=r"trainer\.max_steps"):
        load_recipe(path)


def test_bad_override_and_unknown_task_and_bad_choice(tmp_path):
    path = write(tmp_path, "name: x\n")
    with pytest.raises(RecipeError, match=r"optim\.lrr"):
        load_recipe(path, ["optim.lrr=1"])
    with pytest.raises(RecipeError, match=r"tasks\.sarcasm"):
        load_recipe(write(tmp_path, "tasks:\n  sarcasm: {}\n", "t.yaml"))
    with pytest.raises(RecipeError, match=r"tasks\.emotion\.loss"):
        load_recipe(write(tmp_path, "tasks:\n  emotion: {loss: mse}\n", "l.yaml"))


def test_defaults_and_overrides_merge_in_order(tmp_path):
    write(tmp_path, "name: base\noptim: {lr: 0.5}\ntrainer: {max_steps: 7}\ntasks: {emotion: {}}\n", "base.yaml")
    path = write(tmp_path, "defaults: [base.yaml]\nname: child\noptim: {lr: 0.25}\n")
    cfg = load_recipe(path, ["trainer.max_steps=3"])
    assert (cfg.name, cfg.optim.lr, cfg.trainer.max_steps) == ("child", 0.25, 3)


def test_a_missing_defaults_file_names_the_recipe_that_refers_to_it(tmp_path):
    path = write(tmp_path, "defaults: [gone.yaml]\nname: child\ntasks: {emotion: {}}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: its defaults entry 'gone.yaml' is not found"):
        load_recipe(path)


TINY = RECIPES / "tiny.yaml"


def test_an_override_that_is_not_yaml_names_the_override_and_is_one_line(capsys):
    with pytest.raises(RecipeError, match=r"^command-line override name=\{a: not a valid value \(.*flow mapping"):
        load_recipe(TINY, ["name={a"])
    with pytest.raises(SystemExit, match=r"^error: command-line override name='abc: not a valid value"):
        main(["train", "--recipe", str(TINY), "--dry-run", "name='abc"])
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(RecipeError):  # --debug: the traceback, as for any other error
        main(["--debug", "train", "--recipe", str(TINY), "--dry-run", "name='abc"])


def test_brace_patterns_in_a_listed_override_need_no_quotes():
    cfg = load_recipe(TINY, ["data.train=[dir/train-0000{10..11}.tar]",
                             "data.val=[a.tar, 'b,c.tar', {x,y}-{0..2}.tar]", "data.train_weights=[1e-1]",
                             "eval.judge_model=@cf/meta/llama"])  # YAML refuses a leading @: the string typed
    assert list(cfg.data.train) == ["dir/train-0000{10..11}.tar"]
    assert list(cfg.data.val) == ["a.tar", "b,c.tar", "{x,y}-{0..2}.tar"]
    assert (list(cfg.data.train_weights), cfg.eval.judge_model) == ([0.1], "@cf/meta/llama")


@pytest.mark.parametrize("text, says", [
    ("data: [1, 2]\n", r"r\.yaml: key 'data' must be a mapping of its keys, not \[1, 2\]"),
    ("tasks: {emotion: [1]}\n", r"r\.yaml: key 'tasks\.emotion' must be a mapping of its keys"),
    ("data: {train: {a: 1}}\n", r"r\.yaml: key 'data\.train' must be a list, not \{'a': 1\}"),
])
def test_a_section_of_the_wrong_kind_in_a_file_names_the_key(tmp_path, text, says):
    with pytest.raises(RecipeError, match=says):
        load_recipe(write(tmp_path, text))


def test_a_section_of_the_wrong_kind_over_a_parent_or_as_an_override_names_the_key(tmp_path):
    path = write(tmp_path, f"defaults: [{TINY}]\ndata: [1, 2]\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: key 'data' must be a mapping of its keys"):
        load_recipe(path)
    with pytest.raises(SystemExit, match=r"^error: command-line override data=\[1,2\]: key 'data' must be a mapping"):
        main(["train", "--recipe", str(TINY), "--dry-run", "data=[1,2]"])


@pytest.mark.parametrize("override, says", [
    ("encoder.d_model=0", "encoder.d_model=0 must be > 0"),
    ("encoder.n_mels=0", "encoder.n_mels=0 must be > 0"),
    ("encoder.layers=0", "encoder.layers=0 must be > 0"),
    ("encoder.ffn_dim=-1", "encoder.ffn_dim=-1 must be > 0"),
    ("adapter.hidden=0", "adapter.hidden=0 must be > 0"),
    ("llm.tiny.layers=0", "llm.tiny.layers=0 must be > 0"),
    ("encoder.dropout=1.5", r"encoder.dropout=1.5 must be in \[0, 1\]"),
    ("data.level_dbfs=20", r"data.level_dbfs=20.0 must be < 0 \(dB below full scale\)"),
    ("encoder.heads=3", "encoder.d_model=32 must be a multiple of encoder.heads=3"),
    ("encoder.kernel_size=8", "encoder.kernel_size=8 must be odd"),
    ("llm.tiny.heads=3", "llm.tiny.hidden_size=64 must be a multiple of 2 x llm.tiny.heads=3"),
])
def test_model_shapes_torch_would_refuse_are_refused_naming_the_key(override, says):
    with pytest.raises(RecipeError, match=says.replace(".", r"\.")):
        load_recipe(TINY, [override])


def test_a_bad_shape_is_refused_before_any_data_is_built(tmp_path):
    with pytest.raises(SystemExit, match="encoder.n_mels=0 must be > 0"):
        main(["train", "--recipe", str(TINY), f"data.dir={tmp_path / 'data'}", f"run.dir={tmp_path / 'run'}",
              "encoder.n_mels=0"])
    assert not (tmp_path / "data").exists()


def test_every_task_at_share_zero_is_refused_naming_the_tasks(tmp_path):
    shares = ["tasks.response.share=0", "tasks.emotion.share=0", "tasks.asr.share=0"]
    with pytest.raises(RecipeError, match=r"every enabled task has share 0 \(response, emotion, asr\)"):
        load_recipe(TINY, shares)
    # one task left with a share is enough; a disabled task's share does not count
    assert load_recipe(TINY, shares[1:]).tasks.response.share == 1.0
    with pytest.raises(RecipeError, match=r"r\.yaml: every enabled task has share 0 \(emotion\)"):
        load_recipe(write(tmp_path, "tasks: {emotion: {share: 0}, asr: {enabled: false}}\n"))


def test_an_error_names_the_override_that_set_the_bad_value_not_the_file(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(TINY, ["data.max_batch_size=0"])
    assert str(err.value) == "command-line override data.max_batch_size=0: data.max_batch_size=0 must be > 0"
    with pytest.raises(RecipeError, match=r"^command-line override data=\{max_batch_size: 0\}: data\.max_batch_size"):
        load_recipe(TINY, ["data={max_batch_size: 0}"])  # a whole section set on the command line
    with pytest.raises(RecipeError, match=r"^command-line override trainer\.foo=1: trainer\.foo is not an argument"):
        load_recipe(TINY, ["trainer.foo=1"])
    path = write(tmp_path, "tasks: {emotion: {}}\ndata: {max_batch_size: 0}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: data\.max_batch_size=0 must be > 0"):
        load_recipe(path, ["name=other"])  # a value from the file still names the file
