"""`paralign shards write`: validate a JSONL/CSV manifest's clips and write them as WebDataset shards."""
from __future__ import annotations

import argparse
from pathlib import Path

from clips.manifest import read_manifest
from clips.shard_writer import write_shards


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shards", help="write WebDataset shards",
                                   description="Work with WebDataset shards (<split>-NNNNNN.tar + manifest.json).")
    actions = parser.add_subparsers(dest="action", required=True)
    write = actions.add_parser(
        "write", help="write shards from a JSONL/CSV manifest",
        description=("Read a manifest (columns: audio_path or audio or path, plus schema labels), validate every "
                     "clip, and write <split>-NNNNNN.tar shards, manifest.json and rejects.jsonl into --out. A "
                     "re-run over the same folder resumes: clips already written are skipped."))
    write.add_argument("--manifest", type=Path, required=True, help="JSONL or CSV manifest")
    write.add_argument("--out", type=Path, required=True, help="output folder")
    write.add_argument("--split", help="split for records without one (e.g. train)")
    write.add_argument("--sample-rate", type=int, help="resample to this rate (default: keep the native rate)")
    write.add_argument("--max-count", type=int, default=1000, help="samples per shard at most (default: %(default)s)")
    write.add_argument("--max-mb", type=float, default=256, help="MiB per shard at most (default: %(default)s)")
    write.add_argument("--min-seconds", type=float, default=0.2, help="reject shorter clips (default: %(default)s)")
    write.add_argument("--max-seconds", type=float, default=60.0, help="reject longer clips (default: %(default)s)")
    write.add_argument("--require-transcript", action="store_true", help="reject clips without a transcript")
    write.add_argument("--dataset", help="dataset name for records without one (default: the manifest's stem)")
    write.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.manifest.is_file():
        raise SystemExit(f"manifest {args.manifest} does not exist")
    if args.max_count < 1 or args.max_mb <= 0:
        raise SystemExit("--max-count and --max-mb must be positive")
    try:
        summary = write_shards(read_manifest(args.manifest, dataset=args.dataset), args.out, split=args.split,
                               target_sr=args.sample_rate, max_count=args.max_count,
                               max_bytes=int(args.max_mb * 2**20), min_seconds=args.min_seconds,
                               max_seconds=args.max_seconds, require_transcript=args.require_transcript)
    except ValueError as err:  # a malformed manifest line, named with its line number
        raise SystemExit(str(err)) from None
    if not sum(summary.kept.values()) and not summary.already_written:
        raise SystemExit(f"no clip of {args.manifest} passed validation; see {args.out / 'rejects.jsonl'}")
    return 0
