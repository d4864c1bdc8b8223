"""`paralign teacher`: cache the frozen LLM's replies to the clips' text prompts in the recipe's shards."""
from __future__ import annotations

import argparse
from pathlib import Path

from clips.shard_writer import shard_files
from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teacher", help="cache teacher replies in the shards",
        description=("For every clip of the shards in data.dir, every task in teacher.tasks and every variant in "
                     "teacher.variants (conditioned: the transcript plus emotion/style in words; plain: the "
                     "transcript only), generate the frozen LLM's reply to the text prompt and store it in the "
                     "shards as <key>.teacher.json. Identical prompts are generated once; an interrupted run "
                     "resumes from teacher_cache.jsonl."))
    add_recipe_arguments(parser)
    parser.add_argument("--out", type=Path,
                        help="write the shards with replies into this folder (default: rewrite data.dir in place)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    shard_dir = Path(cfg.data.dir)
    if not shard_files(shard_dir):
        raise SystemExit(f"no shards in data.dir={shard_dir}: build them first (paralign data --recipe {args.recipe})")
    from prep.teacher import generate_teacher_replies  # torch and transformers load only when needed

    try:
        generate_teacher_replies(cfg, shard_dir, args.out)
    except ValueError as err:  # a bad teacher task/variant or a chat template that splits the speech slot
        raise SystemExit(f"error: {err}") from None
    return 0
