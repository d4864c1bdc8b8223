"""``paralign infer --ckpt C --audio FILE|FOLDER... [--task T] [--prompt TEXT] [--batch-size N]``."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from lightning_modules.speech_llm import SpeechLLM
    from paralign.infer import Answer, MetadataFor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer", help="ask the frozen LLM about your own recordings",
        description="Any format soundfile reads (wav, flac, ogg, ...), any sample rate (resampled), mono or not "
                    "(mixed down). The recipe comes from the run folder of the checkpoint. Replies are printed "
                    "as each batch is done ('<file>: <reply>'); a file that cannot be answered (unreadable, "
                    "silent, too short or long) gets one 'error: <file>: <why>' line on stderr instead, the "
                    "others are answered, and the exit status is then 1.")
    parser.add_argument("--ckpt", required=True, help="a checkpoint of a trained run")
    parser.add_argument("--audio", nargs="+", required=True,
                        help="audio files, or folders: a folder's own .wav, .flac and .ogg files in name order "
                             "(not those of its subfolders)")
    parser.add_argument("--task", default="response", help="response | emotion | style | asr (default: response)")
    parser.add_argument("--prompt", default=None, help="your own instruction (overrides --task)")
    parser.add_argument("--metadata", default=None,
                        help="method 2 (explicit): metadata text shown next to the speech, e.g. '[emotion: sad; "
                             "valence 1.8, arousal 2.1, dominance 2.4]'; 'auto': predicted by the model's own "
                             "emotion head (the default when the task was trained with metadata)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="files answered together (default: %(default)s); memory grows with it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paralign.infer import InferenceError, answer_batches, audio_inputs, load_for_inference, user_template

    if not Path(args.ckpt).is_file():
        raise SystemExit(f"error: checkpoint not found: {args.ckpt}")
    if args.batch_size < 1:
        raise SystemExit(f"error: --batch-size must be at least 1, got {args.batch_size}")
    audio = audio_inputs(args.audio)
    try:
        template = user_template(args.task, args.prompt)
        model, cfg = load_for_inference(args.ckpt)
        metadata = _metadata(args, model, cfg)
        batches = answer_batches(model, cfg, audio, template, metadata, args.batch_size,
                                 max_new_tokens=args.max_new_tokens, do_sample=args.sample)
        failed = _print_answers(batches, len(audio))
    except InferenceError as err:
        raise SystemExit(f"error: {err}") from None
    if failed:
        raise SystemExit(f"error: {failed} of {len(audio)} files got no reply (the reasons are above)")
    return 0


def _metadata(args: argparse.Namespace, model: SpeechLLM, cfg: DictConfig) -> MetadataFor | None:
    """What each clip shows next to its speech: the user's --metadata text, the model's own prediction, or
    nothing (a task trained without metadata)."""
    from datamodules.metadata import MetadataSpec
    from paralign.infer import predicted_metadata

    task = model.tasks.get(args.task)
    spec = task.metadata if task is not None and not args.prompt else None
    if args.metadata == "auto" or (args.metadata is None and spec is not None):
        return predicted_metadata(model, cfg, spec or MetadataSpec())
    return (lambda wave: args.metadata) if args.metadata else None


def _print_answers(batches: Iterable[list[Answer]], total: int) -> int:
    """Each batch's replies as soon as it is done (stdout), each failed file's reason in one line (stderr), under a
    progress bar; returns how many files failed."""
    failed = 0
    with tqdm(total=total, desc="answering", unit="file") as bar:
        for batch in batches:
            for answer in batch:
                if answer.error is None:
                    heard = f' (heard: "{answer.heard}")' if answer.heard is not None else ""
                    if answer.perceived is not None:
                        heard += f" (felt: {answer.perceived})"
                    _write(f"{answer.path}{heard}: {answer.reply.strip()}", sys.stdout)
                else:
                    _write(f"error: {answer.error}", sys.stderr)
                    failed += 1
            bar.update(len(batch))
    return failed


def _write(line: str, stream: IO[str]) -> None:
    tqdm.write(line, file=stream)  # above the progress bar, not through it
    stream.flush()  # a reply is out when its batch is done, also into a pipe or a file
