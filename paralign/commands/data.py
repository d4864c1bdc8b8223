"""``paralign data --recipe R``: build the shards a recipe needs (cached)."""
from __future__ import annotations

import argparse

from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="build the shards a recipe needs (synthetic corpus, teacher "
                                                "replies); cached, so a second call is instant")
    add_recipe_arguments(parser, default="recipes/tiny.yaml")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    from paralign.data import prepare_data, shard_sources

    prepare_data(cfg)
    for split, sources in shard_sources(cfg).items():
        print(f"{split}: {sources}")
    return 0
