"""Render the sbatch script of a training run from `paralign/sbatch.tmpl` and submit it.

The script launches `paralign train` under `srun`, one task per GPU, asks SLURM for SIGUSR1 some time before the
time limit and allows requeueing: callbacks/preemption.py then checkpoints at the end of the step and requeues the
job, and the requeued job resumes in the same run folder, which is fixed when the script is rendered.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time as _time
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import DictConfig

from paralign.recipe_loading import load_recipe

TEMPLATE = Path(__file__).with_name("sbatch.tmpl")  # package data: found in an installed wheel too
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# Values that land in #SBATCH lines cannot be quoted there, so they must be free of whitespace.
_UNQUOTABLE = re.compile(r"\s")


class SlurmError(RuntimeError):
    """sbatch is missing, refused the script, or answered something that is not a job id."""


# Keys the template sets from render_sbatch's arguments; an override of one would contradict the #SBATCH lines.
_TEMPLATE_KEYS = ("run.dir", "trainer.num_nodes", "trainer.devices", "trainer.accelerator")


def default_run_dir(cfg: DictConfig) -> Path:
    """`<run.root>/<recipe name>/<timestamp>` as an absolute path, fixed now so that a requeued job finds it again.

    The same layout as paralign.train.resolve_run_dir, which cannot be imported here cheaply (it imports torch).
    """
    return Path(cfg.run.root).resolve() / cfg.name / _time.strftime("%Y%m%d-%H%M%S")


def default_launcher() -> str:
    """The `paralign` console script of this Python environment, so that the job uses the same packages."""
    beside_python = Path(sys.executable).parent / "paralign"
    return shlex.quote(str(beside_python)) if beside_python.exists() else "paralign"


def render_sbatch(
    recipe: str | Path,
    nodes: int,
    gpus: int,
    *,
    partition: Optional[str] = None,
    time: str = "24:00:00",
    run_dir: Optional[str | Path] = None,
    signal_seconds: int = 120,
    extra_args: Sequence[str] = (),
    cpus_per_task: Optional[int] = None,
    accelerator_gpu: bool = True,
    launcher: Optional[str] = None,
) -> str:
    """The sbatch script that trains `recipe` on `nodes` x `gpus` ranks.

    `gpus` is the number of ranks per node (one task each); with `accelerator_gpu=False` they are CPU processes and
    no GPUs are requested. `extra_args` are `key=value` recipe overrides appended to `paralign train`.
    `launcher` is the command that srun runs with `train --recipe ...` (default: this environment's `paralign`).
    Without `run_dir` the recipe is loaded for its name and run root (see `default_run_dir`).
    """
    if nodes < 1 or gpus < 1:
        raise ValueError(f"nodes and gpus must be at least 1, got nodes={nodes} gpus={gpus}")
    if signal_seconds < 1:
        raise ValueError(f"signal_seconds must be positive, got {signal_seconds}")
    if cpus_per_task is not None and cpus_per_task < 1:
        raise ValueError(f"cpus_per_task must be at least 1, got {cpus_per_task}")
    bad = [arg for arg in extra_args if "=" not in arg or arg.startswith("=")]
    if bad:
        raise ValueError(f"extra arguments must be key=value recipe overrides, got {bad}")
    clashing = [arg for arg in extra_args if arg.split("=", 1)[0] in _TEMPLATE_KEYS]
    if clashing:
        raise ValueError(f"{clashing} are set from the nodes/gpus/run folder arguments; pass those instead")
    run_dir = Path(run_dir).resolve() if run_dir is not None else default_run_dir(load_recipe(recipe, extra_args))
    for name, value in (("run_dir", str(run_dir)), ("partition", partition or ""), ("time", time)):
        if _UNQUOTABLE.search(value):
            raise ValueError(f"{name} must not contain whitespace (it goes into an #SBATCH line): {value!r}")

    values: dict[str, Optional[str]] = {
        "recipe": shlex.quote(str(recipe)),
        "job_name": f"paralign-{Path(recipe).stem}",
        "nodes": str(nodes),
        "gpus": str(gpus),
        "gpus_per_node": str(gpus) if accelerator_gpu else None,
        "cpus_per_task": str(cpus_per_task) if cpus_per_task is not None else None,
        "time": time,
        "partition": partition,
        "signal_seconds": str(signal_seconds),
        "run_dir": str(run_dir),
        "workdir": shlex.quote(str(Path.cwd())),
        "launcher": launcher or default_launcher(),
        "accelerator": "gpu" if accelerator_gpu else "cpu",
        "extra_args": " ".join(shlex.quote(arg) for arg in extra_args),
    }
    return _fill(TEMPLATE.read_text(), values)


def _fill(template: str, values: dict[str, Optional[str]]) -> str:
    """Replace `{{name}}` placeholders; an #SBATCH line whose value is None is dropped (the cluster default holds)."""
    lines = []
    for line in template.splitlines(keepends=True):
        names = _PLACEHOLDER.findall(line)
        unknown = [name for name in names if name not in values]
        if unknown:
            raise KeyError(f"{TEMPLATE} uses placeholders that render_sbatch does not fill: {unknown}")
        if any(values[name] is None for name in names):
            if line.startswith("#SBATCH"):
                continue
            raise ValueError(f"no value for a placeholder in a line that cannot be left out: {line.strip()}")
        lines.append(_PLACEHOLDER.sub(lambda match: values[match.group(1)] or "", line))
    return "".join(lines)


def submit(script_text: str, run_dir: str | Path, *, sbatch: str = "sbatch") -> str:
    """Write the script to `<run_dir>/slurm/job.sbatch`, submit it with sbatch and return the job id.

    The log folder is made here because SLURM opens the job's log files before the script runs.
    """
    executable = shutil.which(sbatch)
    if executable is None:
        raise SlurmError(
            f"{sbatch!r} not found on PATH: submit from a SLURM login node, or print the script with --dry"
        )
    log_dir = Path(run_dir).resolve() / "slurm"
    log_dir.mkdir(parents=True, exist_ok=True)
    script = log_dir / "job.sbatch"
    script.write_text(script_text)
    done = subprocess.run([executable, "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused {script}: {done.stderr.strip() or done.stdout.strip()}")
    # --parsable prints "<job id>" or "<job id>;<cluster>".
    job_id = done.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {done.stdout.strip()!r}, which holds no job id")
    return job_id
