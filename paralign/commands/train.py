"""``paralign train --recipe R [key=value ...]``."""
from __future__ import annotations

import argparse
import signal
import sys

from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a recipe (builds its data first if needed)",
        description="Build the data the recipe needs (cached), then train. The run folder (run.dir, default "
                    "runs/<name>/<timestamp>) gets config.yaml, env.txt, checkpoints/ and tensorboard/. A run "
                    "folder that holds checkpoints/last.ckpt is resumed (run.resume=never starts afresh).")
    add_recipe_arguments(parser, default="recipes/tiny.yaml")
    parser.add_argument("--dry-run", action="store_true",
                        help="build the model on the meta device (no weights, no data), print parameter counts, "
                             "the trainable share and the estimated memory per GPU, and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = recipe_from_args(args)
    if args.dry_run:
        from paralign.dry_run import dry_run

        try:
            print(dry_run(cfg))
        except ValueError as err:  # a model whose architecture cannot be found
            raise SystemExit(f"error: {err}") from None
        return 0
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from callbacks.preemption import Preempted
    from paralign.train import train

    try:
        run_dir = train(cfg)
    except Preempted as stop:
        print(f"paralign train: {stop}", file=sys.stderr)
        return 128 + int(stop.signum)  # as a shell reports a process ended by that signal
    except SIGTERMException:  # Lightning's own stop (a SIGTERM during validation), a SystemExit with status 0
        print("paralign train: stopped by SIGTERM during validation; the run folder's newest checkpoint resumes",
              file=sys.stderr)
        return 128 + int(signal.SIGTERM)
    if cfg.eval.after_train:
        from paralign.evaluation.summary import evaluate_and_print

        evaluate_and_print(cfg, run_dir / "checkpoints" / "last.ckpt", run_dir)
    print(f"run folder: {run_dir}\nTensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}")
    return 0
