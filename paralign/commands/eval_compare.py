"""`paralign eval-compare`: one table and one chart comparing evaluated runs on the same test set."""
from __future__ import annotations

import argparse
from pathlib import Path

from paralign.evaluation.compare import CompareError, compare_runs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-compare",
        help="compare evaluated runs side by side (markdown table + bar chart)",
        description=(
            "Read RUN_DIR/eval/metrics.json of each run (written by `paralign eval`) and write comparison.md and "
            "comparison.png into --out. Refuses runs that were evaluated on different test sets."
        ),
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders holding eval/")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"),
                        help="folder for comparison.md and comparison.png (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        table, chart = compare_runs(args.run_dirs, args.out)
    except CompareError as error:
        raise SystemExit(str(error)) from None
    print(f"wrote {table} and {chart}")
    return 0
