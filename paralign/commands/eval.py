"""``paralign eval --recipe R --ckpt C [key=value ...]``, ``paralign eval --model DIR [key=value ...]`` (a cascade
recipe needs neither)."""
from __future__ import annotations

import argparse
from pathlib import Path

from paralign.commands.model_args import add_model_arguments, model_path
from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a trained run (or a cascade reference) on the test split (report in <run>/eval/)",
        description="For every test clip and enabled task, the frozen LLM's reply from speech; then accuracy / F1 "
                    "of emotion and style answers, ROUGE and semantic similarity of replies, WER of asr, the linear "
                    "probe, bootstrap intervals, and (eval.judge=local|openai) an LLM judge with its validation. "
                    "Writes eval/generations.jsonl, metrics.json, report.md and PNG plots. Resumable. A cascade "
                    "recipe (eval.cascade=transcript|transcript+labels) types the transcript into the LLM instead "
                    "and takes no checkpoint.")
    add_recipe_arguments(parser, default="recipes/tiny.yaml")
    add_model_arguments(parser, required=False)
    parser.add_argument("--run-dir", default=None, help="where eval/ goes (default: the checkpoint's run folder, or "
                                                        "the model folder; for a cascade, run.dir or "
                                                        "runs/<name>/<time>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.model is not None:
        if args.recipe:
            raise SystemExit("error: --model brings its own recipe: drop --recipe (change keys with key=value, "
                             "e.g. data.dir=<your shards>)")
        from paralign.model_folder import folder_recipe

        cfg = folder_recipe(model_path(args), args.overrides)
    else:
        cfg = recipe_from_args(args)
    cascade = cfg.eval.cascade != "none"
    if cascade and (args.ckpt or args.model):
        raise SystemExit(f"error: {cfg.name} is a cascade reference (eval.cascade={cfg.eval.cascade}): it has no "
                         "checkpoint; drop --ckpt")
    path = model_path(args)
    if not cascade and not path:
        raise SystemExit("error: --ckpt or --model is required (e.g. runs/demo/<time>/checkpoints/last.ckpt)")
    from paralign.evaluation.summary import evaluate_and_print

    run_dir = args.run_dir
    if cascade:
        from paralign.data import prepare_data
        from paralign.train import resolve_run_dir

        run_dir = args.run_dir or resolve_run_dir(cfg)
        prepare_data(cfg)
    evaluate_and_print(cfg, path, run_dir or (Path(path) if args.model else Path(path).resolve().parents[1]))
    return 0
