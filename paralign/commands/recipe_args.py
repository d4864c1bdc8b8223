"""The ``--recipe R [key=value ...]`` arguments shared by the sub-commands that read a recipe."""
from __future__ import annotations

import argparse

from omegaconf import DictConfig

from paralign.recipe_loading import load_recipe


def add_recipe_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--recipe", default=None, required=default is None,
                        help="recipe YAML" + (f" (default: {default})" if default else ""))
    parser.set_defaults(default_recipe=default)  # None on the parser: a command can tell "not given"
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="OmegaConf dot-list overrides, e.g. trainer.max_steps=5 run.dir=/tmp/x")


def recipe_path(args: argparse.Namespace) -> str:
    """The recipe given, else the command's default."""
    return args.recipe or args.default_recipe


def recipe_from_args(args: argparse.Namespace) -> DictConfig:
    # A RecipeError (a ValueError) reaches paralign.cli.main: one line, or its traceback with --debug.
    return load_recipe(recipe_path(args), args.overrides)
