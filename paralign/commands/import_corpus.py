"""`paralign import`: read a released emotion / style corpus and write it as WebDataset shards."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from datamodules.importers import IMPORTERS, import_corpus
from datamodules.shard_writer import write_shards

SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")  # split names become shard file prefixes: <split>-000000.tar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a corpus (ESD, RAVDESS, CREMA-D, IEMOCAP, MSP-Podcast, Expresso, a manifest) into shards",
        description=(
            "Read a corpus in its released layout, map its labels onto the shared emotion / style vocabulary "
            "(keeping the original label), and write <split>-NNNNNN.tar shards plus manifest.json. Clips keep the "
            "corpus's own split (train / validation / test ...; 'train' where it defines none) unless --split "
            "is given. For 'manifest', --root is the JSONL or CSV file (rows without a split go to 'train')."
        ),
    )
    parser.add_argument("corpus", choices=sorted(IMPORTERS), help="which corpus layout to read")
    parser.add_argument("--root", type=Path, required=True, help="the corpus folder as released (or manifest file)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the shards (resumes if it holds some)")
    parser.add_argument("--split", help="put every clip in this split instead of the corpus's own (e.g. 'test')")
    parser.add_argument("--sample-rate", type=int, help="resample audio to this rate (default: keep the native rate)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.split is not None and not SPLIT_NAME.fullmatch(args.split):
        raise SystemExit(f"--split {args.split!r}: use letters, digits and underscores only")
    if args.sample_rate is not None and args.sample_rate <= 0:
        raise SystemExit(f"--sample-rate must be positive, got {args.sample_rate}")
    try:
        records = import_corpus(args.corpus, args.root)
        if args.split is not None:
            records = ({**record, "split": args.split} for record in records)
        # The writer shows the progress bar; a malformed label file surfaces here as a ValueError naming it.
        # Its split is only the fallback for manifest rows without one: "train", as for corpora that define none.
        summary = write_shards(records, args.out, split=args.split or "train", target_sr=args.sample_rate)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(str(error)) from None
    if not summary.kept and not summary.already_written:
        raise SystemExit(f"no clip of {args.root} could be written (see {args.out / 'rejects.jsonl'})")
    return 0
