"""`paralign import`: read a released emotion / style corpus and write it as WebDataset shards."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from prep.importers import IMPORTERS, import_corpus
from prep.importers.speaker_split import CORPORA_WITH_SPLIT, SpeakerSplit, write_split_shards

SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")  # split names become shard file prefixes: <split>-000000.tar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a corpus (ESD, RAVDESS, CREMA-D, EmoDB, IEMOCAP, MSP-Podcast, Expresso, a manifest) into "
             "shards",
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
    speakers = parser.add_argument_group(
        "speaker-disjoint split", "for corpora that define no split (ravdess, cremad, emodb, iemocap, manifest): "
        "every clip of a speaker goes to that speaker's split; manifest.json records how")
    speakers.add_argument("--val-speakers", default="", help="comma-separated speaker ids for 'val' (e.g. Actor_09)")
    speakers.add_argument("--test-speakers", default="", help="comma-separated speaker ids for 'test'")
    speakers.add_argument("--val-share", type=float, default=0.0, help="or: this share of speakers in 'val'")
    speakers.add_argument("--test-share", type=float, default=0.0, help="and this share in 'test'")
    speakers.add_argument("--split-seed", type=int, default=0, help="seed of the hashed share (default: 0)")
    parser.set_defaults(func=run)


def speaker_split(args: argparse.Namespace) -> SpeakerSplit | None:
    names = (lambda text: [s.strip() for s in text.split(",") if s.strip()])
    try:
        split = SpeakerSplit(names(args.val_speakers), names(args.test_speakers), args.val_share, args.test_share,
                             args.split_seed)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if not split.active:
        return None
    if args.split is not None:
        raise SystemExit("error: --split puts every clip in one split; it excludes a speaker split")
    if args.corpus in CORPORA_WITH_SPLIT:
        raise SystemExit(f"error: {args.corpus} defines its own split, which is kept; drop the speaker options")
    return split


def run(args: argparse.Namespace) -> int:
    if args.split is not None and not SPLIT_NAME.fullmatch(args.split):
        raise SystemExit(f"--split {args.split!r}: use letters, digits and underscores only")
    if args.sample_rate is not None and args.sample_rate <= 0:
        raise SystemExit(f"--sample-rate must be positive, got {args.sample_rate}")
    by_speaker = speaker_split(args)
    try:
        records = import_corpus(args.corpus, args.root)
        if args.split is not None:
            records = ({**record, "split": args.split} for record in records)
        # The writer shows the progress bar; a malformed label file surfaces here as a ValueError naming it.
        # Its split is only the fallback for manifest rows without one: "train", as for corpora that define none.
        summary, unknown = write_split_shards(records, args.out, by_speaker, fallback_split=args.split or "train",
                                              target_sr=args.sample_rate)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(str(error)) from None
    if not summary.kept and not summary.already_written:
        raise SystemExit(f"no clip of {args.root} could be written (see {args.out / 'rejects.jsonl'})")
    if unknown:
        print(f"note: {len(unknown)} clips have no speaker id and stay in train (e.g. {', '.join(unknown[:3])})")
    return 0
