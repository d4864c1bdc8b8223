"""`paralign slurm`: render the sbatch script of a training run and submit it (or print it with --dry)."""
from __future__ import annotations

import argparse
from pathlib import Path

from paralign.commands.recipe_args import add_recipe_arguments, recipe_from_args
from paralign.slurm import SlurmError, default_run_dir, render_sbatch, submit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "slurm",
        help="submit a (multi-node) training run to SLURM, with checkpoint + requeue on SIGUSR1",
        description=(
            "Render paralign/sbatch.tmpl for a recipe and submit it with sbatch. The job runs `paralign train` under "
            "srun (one task per GPU), gets SIGUSR1 --signal-seconds before --time runs out, checkpoints, requeues "
            "itself and resumes from the same run folder (run.dir=..., default <run.root>/<name>/<timestamp>, on "
            "storage that every node sees). Logs: <run dir>/slurm/<job id>.out and .err."
        ),
    )
    add_recipe_arguments(parser)
    parser.add_argument("--nodes", type=int, required=True, help="number of nodes")
    parser.add_argument("--gpus", type=int, required=True, help="GPUs (= tasks) per node")
    parser.add_argument("--partition", help="SLURM partition (default: the cluster's default)")
    parser.add_argument("--time", default="24:00:00", help="time limit per job segment (default: %(default)s)")
    parser.add_argument("--signal-seconds", type=int, default=120,
                        help="send SIGUSR1 this many seconds before the time limit (default: %(default)s)")
    parser.add_argument("--cpus-per-task", type=int, help="CPU cores per task (default: the cluster's default)")
    parser.add_argument("--cpu", action="store_true", help="CPU processes instead of GPUs (requests no GPUs)")
    parser.add_argument("--dry", action="store_true", help="print the script instead of submitting it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Loading the recipe here catches a bad recipe or override now rather than after a wait in the queue.
    cfg = recipe_from_args(args)
    run_dir = Path(cfg.run.dir).resolve() if cfg.run.dir else default_run_dir(cfg)
    # run.dir reaches the job through the template, which also puts the logs there.
    overrides = [item for item in args.overrides if not item.startswith("run.dir=")]
    try:
        script = render_sbatch(
            args.recipe, args.nodes, args.gpus, partition=args.partition, time=args.time, run_dir=run_dir,
            signal_seconds=args.signal_seconds, extra_args=overrides, cpus_per_task=args.cpus_per_task,
            accelerator_gpu=not args.cpu,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if args.dry:
        print(script, end="")
        return 0
    try:
        job_id = submit(script, run_dir)
    except SlurmError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"submitted job {job_id}; run folder {run_dir}; logs {run_dir / 'slurm' / job_id}.out and .err")
    return 0
