"""``paralign infer --ckpt C --audio FILE... [--task T] [--prompt TEXT]``."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer", help="ask the frozen LLM about your own recordings",
        description="Any format soundfile reads (wav, flac, ogg, ...), any sample rate (resampled), mono or not "
                    "(mixed down). The recipe comes from the run folder of the checkpoint.")
    parser.add_argument("--ckpt", required=True, help="a checkpoint of a trained run")
    parser.add_argument("--audio", nargs="+", required=True, help="one or more audio files")
    parser.add_argument("--task", default="response", help="response | emotion | style | asr (default: response)")
    parser.add_argument("--prompt", default=None, help="your own instruction (overrides --task)")
    parser.add_argument("--metadata", default=None,
                        help="method 2 (explicit): metadata text shown next to the speech, e.g. '[emotion: sad; "
                             "valence 1.8, arousal 2.1, dominance 2.4]'; 'auto': predicted by the model's own "
                             "emotion head (the default when the task was trained with metadata)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from datamodules.metadata import MetadataSpec
    from paralign.infer import InferenceError, infer, load_for_inference, predicted_metadata, user_template

    if not Path(args.ckpt).is_file():
        raise SystemExit(f"error: checkpoint not found: {args.ckpt}")
    try:
        template = user_template(args.task, args.prompt)
        model, cfg = load_for_inference(args.ckpt)
        task = model.tasks.get(args.task)
        spec = task.metadata if task is not None and not args.prompt else None
        metadata = None
        if args.metadata == "auto" or (args.metadata is None and spec is not None):
            metadata = predicted_metadata(model, cfg, args.audio, spec or MetadataSpec())
        elif args.metadata:
            metadata = [args.metadata] * len(args.audio)
        replies = infer(model, cfg, args.audio, template, metadata, max_new_tokens=args.max_new_tokens,
                        do_sample=args.sample)
    except InferenceError as err:
        raise SystemExit(f"error: {err}") from None
    for path, reply in zip(args.audio, replies):
        print(f"{path}: {reply.strip()}")
    return 0
