"""`paralign bench`: the side-by-side performance benchmark (table of medians and ratios, written as JSON), and
its parts alone (`paralign bench --part loader|teacher|scale`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from paralign.commands.model_args import add_model_arguments, model_path
from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args, recipe_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="performance benchmark: teacher caching, bucketing, loader, generation, LLM floor, memory",
        description=("Measure, in one run, pairs of figures as medians over --repeats with the ratio of each pair: "
                     "the training step with cached teacher targets vs an on-the-fly teacher pass; the training "
                     "step vs the bare frozen-LLM forward+backward; padding ratio and loader throughput bucketed vs "
                     "plain; the loader vs the training step's consumption; batched vs one-at-a-time teacher "
                     "generation; peak memory of a step; the Whisper encoder on a clip's real length vs padded to "
                     "30 s (with its conversion and load time); resampling from an odd rate, polyphase vs "
                     "torchaudio. Prints a table and writes JSON to --out."))
    add_recipe_arguments(parser, default="recipes/demo.yaml")  # the demo models (SmolLM2, Whisper-base)
    parser.add_argument("--batch-size", type=int, default=8, help="clips per training batch (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="length of each synthetic training clip in seconds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per figure (default: %(default)s)")
    parser.add_argument("--prompts", type=int, default=None,
                        help="prompts for the teacher generation row (default: the recipe's teacher.batch_size)")
    parser.add_argument("--shards", default=None,
                        help="shards for the loader rows (default: a temporary set of 96 tone clips)")
    parser.add_argument("--bucket-window", type=int, default=None,
                        help="examples sorted per bucket on the bucketed loader side (default: the recipe's "
                             "data.bucket_window, or 64 where the recipe trains without buckets)")
    parser.add_argument("--whisper", default=None,
                        help="Whisper for the encoder row (default: the recipe's encoder.name when it is a Whisper, "
                             "else whisper-base)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/bench.json"),
                        help="JSON report (default: %(default)s)")
    parser.add_argument("--part", choices=("all", "loader", "teacher", "scale", "serve"), default="all",
                        help="all: the whole table (default); loader: the shard loader alone (--shards, the "
                             "recipe's data.num_workers, --bucket-window); teacher: the recipe's LLM generating "
                             "teacher replies batched vs one at a time (--prompts, teacher.batch_size); both print "
                             "JSON; scale: the recipe's model at full size with random weights (no download), "
                             "--steps training steps on synthetic micro-batches of the recipe's shape on one device: "
                             "step time, throughput, peak memory vs the dry run's estimate (JSON to --out); serve: "
                             "replies per second of `paralign serve` with 1 and N concurrent clients, batched vs one "
                             "at a time (--model/--ckpt, else the recipe's model untrained: the same compute)")
    parser.add_argument("--max-samples", type=int, default=0,
                        help="--part loader: stop each pass after this many samples (0: all)")
    parser.add_argument("--single", type=int, default=0,
                        help="--part teacher: time one-at-a-time generation on this many prompts (0: all)")
    parser.add_argument("--steps", type=int, default=10,
                        help="--part scale: timed training steps, after 3 untimed ones (default: %(default)s)")
    add_model_arguments(parser, required=False)
    parser.add_argument("--clients", default="1,8", help="--part serve: concurrent clients per row (default: 1,8)")
    parser.add_argument("--requests-per-client", type=int, default=2,
                        help="--part serve: requests each client sends (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="--part serve: reply length cap (default: %(default)s)")
    parser.set_defaults(func=run)


def run_serve(args: argparse.Namespace, cfg) -> int:
    import torch

    from lightning_modules.speech_llm import SpeechLLM
    from paralign.benchmarks.serving import format_serve, serve_benchmark
    from paralign.infer import Answerer, load_for_inference

    path = model_path(args)
    model, cfg = load_for_inference(path) if path else (SpeechLLM(cfg).eval(), cfg)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    answerer = Answerer(model.to(device), cfg, max_new_tokens=args.max_new_tokens, do_sample=False)
    clients = tuple(int(c) for c in args.clients.split(","))
    report = serve_benchmark(answerer, clients, args.requests_per_client, seconds=args.seconds)
    report["model"] = str(path) if path else f"{cfg.name} (untrained)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(format_serve(report, report["model"], device))
    print(f"written: {args.out}")
    return 0


def run_loader(args: argparse.Namespace, cfg) -> int:
    from paralign.benchmarks.loader import loader_benchmark
    from paralign.benchmarks.side_by_side import recipe_train_shards

    shards = args.shards or recipe_train_shards(cfg)
    if shards is None:
        raise SystemExit("error: --part loader needs --shards, or the recipe's data.dir built (make data)")
    report = loader_benchmark(shards, cfg.data.num_workers, bucket_window=args.bucket_window or 64,
                              max_batch_seconds=cfg.data.max_batch_seconds, max_batch_size=cfg.data.max_batch_size,
                              max_samples=args.max_samples)
    print(json.dumps(report, indent=1))
    return 0


def run_teacher(args: argparse.Namespace, cfg) -> int:
    import torch

    from lightning_modules.speech_llm import load_frozen_llm
    from paralign.benchmarks.teacher import bench_prompts, teacher_throughput

    llm = load_frozen_llm(cfg).to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    report = teacher_throughput(llm, bench_prompts(llm, args.prompts or cfg.teacher.batch_size),
                                cfg.teacher.batch_size, cfg.teacher.max_new_tokens, args.single)
    print(json.dumps({"llm": cfg.llm.name, **report}, indent=1))
    return 0


def run_scale(args: argparse.Namespace, cfg) -> int:
    from paralign.benchmarks.scale import format_scale, scale_benchmark

    report = scale_benchmark(cfg, steps=args.steps, device=args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(format_scale(report))
    print(f"written: {args.out}")
    return 0


PARTS = {"loader": run_loader, "teacher": run_teacher, "scale": run_scale, "serve": run_serve}


def run(args: argparse.Namespace) -> int:
    from paralign.benchmarks.side_by_side import format_table, run_benchmark

    cfg = recipe_from_args(args)
    if args.shards is not None and not Path(args.shards).exists() and not args.shards.startswith("pipe:"):
        raise SystemExit(f"--shards {args.shards}: no such file or folder")
    try:
        if args.part != "all":
            return PARTS[args.part](args, cfg)
        report = run_benchmark(cfg, batch_size=args.batch_size, seconds=args.seconds, repeats=args.repeats,
                               shards=args.shards, prompts=args.prompts, bucket_window=args.bucket_window,
                               device=args.device, whisper=args.whisper)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    report["settings"]["recipe_path"] = recipe_path(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(format_table(report))
    print(f"written: {args.out}")
    return 0
