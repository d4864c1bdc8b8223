"""`paralign predict-labels`: a trained emotion predictor run over shards, its labels written into new shards."""
from __future__ import annotations

import argparse
from pathlib import Path

from paralign.commands.model_args import add_model_arguments, model_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict-labels", help="write a predictor's emotion labels into new shards (explicit metadata)",
        description=("Run the classifier heads of a trained run (classifier.enabled, e.g. recipes/"
                     "emotion_predictor.yaml) over every clip of --shards and write the shards to --out with the "
                     "predictions as extra.predicted in each <key>.json; recipes read them with "
                     "tasks.<task>.metadata.source=predicted."))
    add_model_arguments(parser)  # the predictor run's checkpoint, or its exported folder
    parser.add_argument("--shards", type=Path, required=True, help="folder of <split>-NNNNNN.tar shards")
    parser.add_argument("--out", type=Path, required=True, help="folder for the new shards")
    parser.add_argument("--segment-seconds", type=float, default=0.0,
                        help="also predict time-stamped segments of this length for longer clips (0: off)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = model_path(args)
    if args.segment_seconds < 0:
        raise SystemExit("error: --segment-seconds must be >= 0")
    from clips.shard_writer import shard_files
    from paralign.infer import load_for_inference
    from prep.label_prediction import LabelPredictor, emotion_centroids, predict_shard_labels

    shards = shard_files(args.shards)
    if not shards:
        raise SystemExit(f"error: no <split>-NNNNNN.tar shards in {args.shards}")
    model, _ = load_for_inference(path)
    try:
        predictor = LabelPredictor(model, emotion_centroids(shards), model_id=str(path))
        counts = predict_shard_labels(predictor, args.shards, args.out, args.segment_seconds)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"predict-labels: {counts['predicted']} of {counts['clips']} clips predicted "
          f"({counts['unreadable_audio']} unreadable) -> {args.out}")
    return 0
