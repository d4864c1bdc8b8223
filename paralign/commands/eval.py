"""``paralign eval --recipe R --ckpt C [key=value ...]``."""
from __future__ import annotations

import argparse
from pathlib import Path

from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a trained run on the test split (report in <run>/eval/)",
        description="For every test clip and enabled task, the frozen LLM's reply from speech; then accuracy / F1 "
                    "of emotion and style answers, ROUGE and semantic similarity of replies, WER of asr, the linear "
                    "probe, bootstrap intervals, and (eval.judge=local|openai) an LLM judge with its validation. "
                    "Writes eval/generations.jsonl, metrics.json, report.md and PNG plots. Resumable.")
    add_recipe_arguments(parser, default="recipes/tiny.yaml")
    parser.add_argument("--ckpt", required=True, help="checkpoint (e.g. runs/demo/<time>/checkpoints/last.ckpt)")
    parser.add_argument("--run-dir", default=None, help="where eval/ goes (default: the checkpoint's run folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    if not Path(args.ckpt).is_file():
        raise SystemExit(f"error: checkpoint not found: {args.ckpt}")
    from paralign.evaluate import evaluate
    from paralign.summary import print_headline

    metrics = evaluate(cfg, args.ckpt, args.run_dir)
    print_headline(metrics)
    return 0
