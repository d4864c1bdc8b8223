"""Recipes: unknown keys and wrong types are errors naming the key and the file; overrides apply last."""
from __future__ import annotations

from pathlib import Path

import pytest

from paralign.config import RecipeError, load_recipe

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


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml") if not p.name.startswith("_")))
def test_shipped_recipes_validate(recipe):
    cfg = load_recipe(RECIPES / recipe)
    assert cfg.name


def test_a_missing_defaults_file_names_the_recipe_that_refers_to_it(tmp_path):
    path = write(tmp_path, "defaults: [gone.yaml]\nname: child\ntasks: {emotion: {}}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: its defaults entry 'gone.yaml' is not found"):
        load_recipe(path)
