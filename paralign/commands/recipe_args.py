"""The ``--recipe R [key=value ...]`` arguments shared by the sub-commands that read a recipe."""
from __future__ import annotations

import argparse

from omegaconf import DictConfig

from paralign.config import load_recipe


def add_recipe_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--recipe", default=default, required=default is None,
                        help="recipe YAML" + (f" (default: {default})" if default else ""))
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="OmegaConf dot-list overrides, e.g. trainer.max_steps=5 run.dir=/tmp/x")


def recipe_from_args(args: argparse.Namespace) -> DictConfig:
    # A RecipeError (a ValueError) reaches paralign.cli.main: one line, or its traceback with --debug.
    return load_recipe(args.recipe, args.overrides)
