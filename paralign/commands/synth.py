"""`paralign synth`: make the synthetic expressive-speech corpus (espeak-ng) and write it as shards, cached."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth", help="synthesize the espeak-ng expressive-speech corpus into shards",
        description=("Synthesize clips of the sentence bank in 6 emotions and 7 speaking styles with 20 espeak-ng "
                     "voices (wav files in OUT/audio), then write train/val/test/showcase shards and "
                     "manifest.json into OUT. Val and test hold out both voices and sentences. Cached: when OUT "
                     "already holds the corpus of the same --clips, --seed and code, nothing is done."))
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--clips", type=int, default=2400,
                        help="train+val+test clips, 80/10/10 (default: %(default)s; plus 18 showcase clips)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same audio and labels")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prep import synth

    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    try:
        state = synth.corpus_state(args.out, args.clips, args.seed)
        if state == "complete":
            print(f"{args.out} already holds the synthetic corpus (clips={args.clips}, seed={args.seed}, "
                  f"code {synth.code_version()}); nothing to do")
            return 0
        stamp = synth.build_synth_shards(args.out, clips=args.clips, seed=args.seed, workers=args.workers)
    except (ValueError, FileExistsError, RuntimeError) as err:
        raise SystemExit(str(err)) from None
    print(f"synthetic corpus in {args.out}: {stamp['records']} clips, {stamp['hours']} h, synthesized in "
          f"{stamp['synthesis_seconds']} s")
    return 0
