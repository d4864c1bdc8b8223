"""``paralign infer (--ckpt C | --model DIR) (--audio FILE|FOLDER... | --manifest M --out replies.jsonl)``."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from tqdm import tqdm

from paralign.commands.model_args import add_model_arguments, model_path

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from lightning_modules.speech_llm import SpeechLLM
    from paralign.infer import Answer, MetadataFor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer", help="ask the frozen LLM about your own recordings",
        description="Any format soundfile reads (wav, flac, ogg, ...), any sample rate (resampled), mono or not "
                    "(mixed down). --audio: replies are printed as each batch is done ('<file>: <reply>'); a file "
                    "that cannot be answered (unreadable, silent, too short or long) gets one 'error: <file>: "
                    "<why>' line on stderr instead, the others are answered, and the exit status is then 1. "
                    "--manifest with --out: every clip asked every task, one JSON line per clip into --out, "
                    "resumable (clips already there are skipped).")
    add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", nargs="+",
                        help="audio files, or folders: a folder's own .wav, .flac and .ogg files in name order "
                             "(not those of its subfolders)")
    source.add_argument("--manifest", default=None,
                        help="batch inference: a JSONL manifest (one object a line with 'audio' (or 'audio_path' "
                             "or 'path', relative to the manifest) and an optional 'id'), or a folder of audio "
                             "files; needs --out")
    parser.add_argument("--out", default=None, help="with --manifest: the JSONL file of replies (appended to)")
    parser.add_argument("--task", default=None,
                        help="response | emotion | style | asr (default: response); with --manifest, a "
                             "comma-separated list (default: every task the model was trained on)")
    parser.add_argument("--prompt", default=None, help="your own instruction (overrides --task)")
    parser.add_argument("--metadata", default=None,
                        help="method 2 (explicit): metadata text shown next to the speech, e.g. '[emotion: sad; "
                             "valence 1.8, arousal 2.1, dominance 2.4]'; 'auto': predicted by the model's own "
                             "emotion head (the default when the task was trained with metadata)")
    parser.add_argument("--same-speaker", action="store_true",
                        help="the --audio files are all one speaker's: a model trained with encoder.speaker_norm "
                             "hears each relative to that speaker's mean over all of them, as it heard every "
                             "training speaker (at least two files; without it, each clip is heard as it is)")
    parser.add_argument("--choices", default=None,
                        help="with --task emotion: comma-separated emotions, e.g. neutral,happy,sad,angry; each "
                             "clip's answer is also read as the likeliest of them (the frozen LLM's likelihood of "
                             "each answer, as `paralign eval` scores its closed set), printed with each one's "
                             "probability among them")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="files answered together (default: %(default)s); memory grows with it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from paralign.infer import Answerer, InferenceError, Question, audio_inputs, load_for_inference, user_template

    path = model_path(args)
    if args.batch_size < 1:
        raise SystemExit(f"error: --batch-size must be at least 1, got {args.batch_size}")
    if (args.manifest is None) != (args.out is None):
        raise SystemExit("error: --manifest and --out go together (batch inference into a JSONL file)")
    if args.same_speaker and args.manifest is not None:
        raise SystemExit("error: --same-speaker takes --audio files (one speaker's), not a --manifest")
    try:
        choices = _choices(args)
        if args.manifest is not None:
            from paralign.batch_infer import manifest_clips, task_names

            clips = manifest_clips(args.manifest)
            model, cfg = load_for_inference(path)
            tasks = task_names(model, args.task)
            questions = {task: Question(user_template(task, None, model.tasks), _metadata(args, model, cfg, task))
                         for task in tasks}
        else:
            task = args.task or "response"
            audio = audio_inputs(args.audio)
            user_template(task, args.prompt)  # a wrong --task is told before the model loads
            model, cfg = load_for_inference(path)
            # the phrasing the model was trained with (a recipe may train one only)
            questions = {task: Question(user_template(task, args.prompt, model.tasks),
                                        _metadata(args, model, cfg, task))}
        answerer = Answerer(model, cfg, choices=choices, max_new_tokens=args.max_new_tokens, do_sample=args.sample)
        if args.same_speaker:
            heard = answerer.enrol(_readable(audio, cfg.data.sample_rate))
            print(f"infer: one speaker's statistics from {heard} of {len(audio)} files", file=sys.stderr)
        if args.manifest is not None:
            from paralign.batch_infer import answer_manifest

            done = answer_manifest(answerer, clips, questions, args.out, args.batch_size)
            print(f"infer: {done['answered']} clips answered, {done['failed']} failed, {done['skipped']} already "
                  f"in {args.out}")
            return 1 if done["failed"] else 0
        failed = _print_answers(answerer.answer_files(audio, list(questions.values()), args.batch_size), len(audio))
    except InferenceError as err:
        raise SystemExit(f"error: {err}") from None
    if failed:
        raise SystemExit(f"error: {failed} of {len(audio)} files got no reply (the reasons are above)")
    return 0


def _choices(args: argparse.Namespace) -> list[str] | None:
    if args.choices is None:
        return None
    if args.prompt or "emotion" not in (args.task or "response").split(","):
        raise SystemExit("error: --choices reads the emotion question: give --task emotion (and no --prompt)")
    return [c.strip() for c in args.choices.split(",") if c.strip()]


def _readable(paths: list[str], sample_rate: int) -> Iterable:
    """The waves of the files that can be read (the others get their error when answered)."""
    from paralign.infer import InferenceError, load_wave

    for path in tqdm(paths, desc="speaker statistics", unit="file"):
        try:
            yield load_wave(path, sample_rate)
        except InferenceError:
            continue


def _metadata(args: argparse.Namespace, model: SpeechLLM, cfg: DictConfig, task: str) -> MetadataFor | None:
    """What each clip shows next to its speech: the user's --metadata text, the model's own prediction, or
    nothing (a task trained without metadata)."""
    from clips.metadata import MetadataSpec
    from paralign.infer import predicted_metadata

    trained = model.tasks.get(task)
    spec = trained.metadata if trained is not None and not args.prompt else None
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
                    _write(f"{answer.path}{heard}: {answer.reply.strip()}{_closed_set(answer)}", sys.stdout)
                else:
                    _write(f"error: {answer.error}", sys.stderr)
                    failed += 1
            bar.update(len(batch))
    return failed


def _closed_set(answer: Answer) -> str:
    if not answer.choices:
        return ""
    ranked = sorted(answer.choices.items(), key=lambda kv: -kv[1])
    return f" [of {', '.join(answer.choices)}: {answer.choice} ({', '.join(f'{e} {p:.2f}' for e, p in ranked)})]"


def _write(line: str, stream: IO[str]) -> None:
    tqdm.write(line, file=stream)  # above the progress bar, not through it
    stream.flush()  # a reply is out when its batch is done, also into a pipe or a file
