"""``paralign probe-layers --fit <importer>=<folder> --score <importer>=<folder> [--encoder whisper-base]``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe-layers", help="cross-corpus reference: a linear probe on each frozen Whisper layer, fitted on one "
                             "corpus, scored on another",
        description="Mean-pools every hidden state of the frozen Whisper encoder over each clip, fits a linear "
                    "emotion probe per state on --fit and scores it on --score (the emotions both share), with "
                    "four normalisations of the pooled features (fitting corpus, per corpus, per speaker, each "
                    "speaker's mean removed). It says how much emotion the frozen features carry across corpora, "
                    "before any training.")
    parser.add_argument("--fit", required=True, help="<importer>=<folder>, e.g. ravdess=/data/RAVDESS")
    parser.add_argument("--score", required=True, help="<importer>=<folder>, e.g. emodb=/data/EmoDB")
    parser.add_argument("--encoder", default="whisper-base", help="a Whisper (default: %(default)s)")
    parser.add_argument("--trim-db", type=float, default=None,
                        help="trim each clip's leading and trailing silence first (frames more than this many dB "
                             "below the loudest), as data.trim_silence_db does")
    parser.add_argument("--level-dbfs", type=float, default=None,
                        help="then bring each clip to this RMS level (e.g. -20), as data.level_dbfs does")
    parser.add_argument("--layer-norm", action="store_true",
                        help="layer-norm each frame before pooling, as the model's layer mix takes the states")
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lightning_modules.whisper_transcriber import WhisperTranscriber
    from clips.audio import WavePrep
    from paralign.evaluation.layer_probe import corpus_clips, format_layer_probe, layer_probe, pooled_states

    if args.level_dbfs is not None and args.level_dbfs >= 0:
        raise SystemExit(f"--level-dbfs {args.level_dbfs}: a level in dB below full scale is < 0 (e.g. -20)")
    (fit_name, fit), (score_name, score) = corpus_clips(args.fit), corpus_clips(args.score)
    whisper = WhisperTranscriber.load(args.encoder)
    prep = WavePrep(args.trim_db, args.level_dbfs)
    report = layer_probe((pooled_states(whisper, fit, f"pooling {fit_name}", prep, args.layer_norm), fit),
                         (pooled_states(whisper, score, f"pooling {score_name}", prep, args.layer_norm), score))
    report = {"encoder": args.encoder, "fit": args.fit, "score": args.score, "trim_db": args.trim_db,
              "level_dbfs": args.level_dbfs, "layer_norm": args.layer_norm, **report}
    print(format_layer_probe(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"written: {args.out}")
    return 0
