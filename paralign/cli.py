"""The ``paralign`` console script: one sub-command per module in ``paralign.commands``."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = (
    "train", "data", "import_corpus", "shards", "synth", "teacher", "framing_check", "eval", "eval_compare", "infer",
    "export", "serve", "probe_layers", "qa_generate", "qa_bench", "predict_labels", "bench", "slurm",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paralign", description="Teach a frozen LLM to hear how things are said.")
    parser.add_argument("--debug", action="store_true",
                        help="show the whole traceback of an error (by default: one line naming the cause)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"paralign.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"paralign.commands.{name}":
                raise
            continue  # a command not built yet in this checkout
        module.register(subparsers)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a line is logged (a test harness swaps it between calls)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def main(argv: list[str] | None = None) -> int:
    # Our own loggers only: Lightning configures its own, and a root handler would print its lines twice. Once per
    # process, however often main() is called (tests call it many times).
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("paralign", "datamodules", "lightning_modules", "callbacks"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse ends a positional list at the first option: `--out F key=value` would leave key=value over.
    # Overrides may stand anywhere after the sub-command; anything else unknown is still refused.
    stray = [word for word in extra if "=" in word and not word.startswith("-")]
    if extra and (stray != extra or not isinstance(getattr(args, "overrides", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if stray:
        args.overrides = [*args.overrides, *stray]
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as err:  # what bad input, a bad file or a full disk raise
        if args.debug:
            raise
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    sys.exit(main())
