"""`paralign framing-check`: how the recipe's framing makes the teacher answer, on text alone (no training)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "framing-check", help="score the teacher's replies under the recipe's framing (prompt.*), on text alone",
        description=("For the first N sentences of a split of data.dir, the frozen LLM's greedy reply to each "
                     "sentence with each of the corpus's emotions as the cue (the teacher's prompt, prompt.* and "
                     "llm.system_prompt), scored by reply emotion accuracy (the emotion under whose cue the LLM "
                     "finds the reply likeliest, words held fixed), beside a sampled second reply (ceiling) and the "
                     "reply to the words alone (floor), and the share of replies that talk about 'the speaker' "
                     "instead of to them. Try a framing with overrides, e.g. prompt.emotion_cue='[{emotion}]'."))
    add_recipe_arguments(parser, default="recipes/demo.yaml")
    parser.add_argument("--split", default="test")
    parser.add_argument("--sentences", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("runs/framing-check"),
                        help="folder for the replies (cached: a rerun of the same framing generates nothing)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    from paralign.evaluation.reply_emotion import framing_check

    try:
        result = framing_check(cfg, args.split, args.sentences, args.out)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))
    for row in result["examples"]:
        print(f"[{row['emotion']:>9}] {row['transcript']} -> {row['reply']}")
    return 0
