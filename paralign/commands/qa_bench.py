"""`paralign qa-bench import|export`: the QA benchmark format (JSONL) to test shards, and back for the demo."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qa-bench", help="QA benchmark: import a JSONL into test shards, or export one from QA shards",
        description=("JSONL lines {audio, question, answer, type (content | content+emotion | content+gender), "
                     "optional id and labels}. `import` writes one test sample per question; evaluate with "
                     "`paralign eval ... data.test=[DIR] eval.tasks=[qa]` for ROUGE, similarity and judge scores "
                     "by question type."))
    actions = parser.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="benchmark JSONL -> test shards")
    imp.add_argument("--jsonl", type=Path, required=True, help="the benchmark file")
    imp.add_argument("--out", type=Path, required=True, help="folder for the shards")
    imp.add_argument("--name", help="dataset name (default: the file's stem)")
    imp.add_argument("--sample-rate", type=int, default=16000, help="resample to this rate (default: %(default)s)")
    imp.set_defaults(func=run_import)
    exp = actions.add_parser("export", help="QA shards (paralign qa-generate) -> benchmark JSONL + audio")
    exp.add_argument("--shards", type=Path, required=True, help="shards holding <key>.qa.json")
    exp.add_argument("--out", type=Path, required=True, help="folder for benchmark.jsonl and audio/")
    exp.add_argument("--split", default="test", help="split to export (default: %(default)s)")
    exp.set_defaults(func=run_export)


def run_import(args: argparse.Namespace) -> int:
    from prep.qa_bench import import_benchmark

    if not args.jsonl.is_file():
        raise SystemExit(f"error: benchmark file not found: {args.jsonl}")
    try:
        summary = import_benchmark(args.jsonl, args.out, name=args.name, sample_rate=args.sample_rate)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if not sum(summary.kept.values()) and not summary.already_written:
        raise SystemExit(f"error: no question of {args.jsonl} was usable; see {args.out / 'rejects.jsonl'}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from prep.qa_bench import export_benchmark

    try:
        counts = export_benchmark(args.shards, args.out, args.split)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"qa-bench export -> {args.out / 'benchmark.jsonl'}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0
