"""``--ckpt C`` or ``--model DIR``: the two ways a command is given a trained model."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--ckpt", default=None, help="a checkpoint of a trained run (its recipe: the run's config.yaml)")
    group.add_argument("--model", default=None, help="a model folder written by `paralign export`")


def model_path(args: argparse.Namespace) -> str | None:
    """The checkpoint file or model folder given, checked to exist (one line naming it otherwise)."""
    from paralign.model_folder import is_model_folder

    if args.model is not None:
        if not is_model_folder(args.model):
            raise SystemExit(f"error: not a model folder (no config.json and model.safetensors): {args.model}")
        return args.model
    if args.ckpt is not None and not Path(args.ckpt).is_file():
        raise SystemExit(f"error: checkpoint not found: {args.ckpt}")
    return args.ckpt
