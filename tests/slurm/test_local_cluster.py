"""A real SLURM (Debian's slurm-wlm, one node) runs `paralign train` of the tiny recipe through `paralign slurm`, with
2 tasks (DDP on gloo): SIGUSR1 -> checkpoint at the end of the step, requeue, and the requeued job resumes at the
exact data position and ends at the same step, samples, optimizer state and weights as an uninterrupted job; and a
`trainer.max_time` stop ends the job cleanly (COMPLETED, with a checkpoint where it stopped) before its time limit.

Needs root and either slurm-wlm + munge installed or apt-get to install them (slurm/local_cluster.sh does it).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import pytest
import torch

from callbacks.sample_keys import read_sample_keys
from paralign.recipe_loading import load_recipe
from paralign.data import prepare_data

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "slurm" / "local_cluster.sh"
RECIPE = "recipes/tiny.yaml"
MAX_STEPS = 40  # far beyond SIGNAL_AT: the job is frozen (SIGSTOP) the moment step SIGNAL_AT is seen to start
SIGNAL_AT = 4  # SIGUSR1 once step 4 has started (last.ckpt holds step 3 by then)
COMMON = ["trainer.strategy=ddp", "callbacks.last_checkpoint.every_n_train_steps=3", "trainer.limit_val_batches=0",
          "callbacks.sample_keys={}"]
MAX_TIME_SECONDS = 20
JOB_TIMEOUT = 900  # the three jobs run one after the other on the node's 2 cores

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                "PREEMPTED"}


@pytest.fixture(scope="module")
def cluster():
    """A single-node cluster in a fresh folder; SLURM_CONF points the clients at it while the tests run."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (slurmd, munged as user munge, apt-get)")
    # Not pytest's tmp_path: its parents are mode 0700, and munged (user munge) must reach its socket folder.
    folder = Path(tempfile.mkdtemp(prefix="paralign-slurm-"))
    started = subprocess.run([str(CLUSTER), "start", str(folder)], capture_output=True, text=True, timeout=600)
    if started.returncode == 3:  # the script's "cannot install" status; any other failure is a real error
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"slurm-wlm cannot be installed here: {started.stderr.strip()}")
    assert started.returncode == 0, f"local_cluster.sh start failed:\n{started.stdout}\n{started.stderr}"
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield folder
    finally:
        stopped = subprocess.run([str(CLUSTER), "stop", str(folder)], capture_output=True, text=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF")
        else:
            os.environ["SLURM_CONF"] = previous
        shutil.rmtree(folder, ignore_errors=True)
        assert stopped.returncode == 0, f"local_cluster.sh stop failed:\n{stopped.stdout}\n{stopped.stderr}"


def paralign() -> list[str]:
    script = Path(sys.executable).parent / "paralign"
    return [str(script)] if script.exists() else [sys.executable, "-m", "paralign.cli"]


def submit(run_dir: Path, *overrides: str, time_limit: str = "00:15:00") -> str:
    """`paralign slurm` (the rendered template, sbatch) of the tiny recipe on 1 node x 2 CPU tasks; the job id."""
    command = [*paralign(), "slurm", "--recipe", RECIPE, "--nodes", "1", "--gpus", "2", "--cpu", "--time",
               time_limit, f"run.dir={run_dir}", *COMMON, *overrides]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"paralign slurm failed:\n{done.stdout}\n{done.stderr}"
    found = re.search(r"submitted job (\d+)", done.stdout)
    assert found, done.stdout
    return found.group(1)


def job_info(job_id: str) -> dict[str, str]:
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                           check=True)
    return dict(re.findall(r"(\w+)=(\S*)", shown.stdout))


def job_output(run_dir: Path) -> str:
    """Everything the job wrote (stdout, then stderr) in all its segments."""
    paths = sorted((run_dir / "slurm").glob("*.out")) + sorted((run_dir / "slurm").glob("*.err"))
    return "\n".join(path.read_text() for path in paths)


def logs(run_dir: Path, cluster: Path) -> str:
    """The ends of the job's logs and of the daemons' logs, for failure messages."""
    paths = [*sorted((run_dir / "slurm").glob("*.out")), *sorted((run_dir / "slurm").glob("*.err")),
             cluster / "slurmctld.log", cluster / "slurmd.log"]
    return "\n".join(f"--- {path}\n{path.read_text()[-6000:]}" for path in paths if path.exists())


def wait_for(condition: Callable[[], bool], timeout: float, what: str, run_dir: Path, cluster: Path,
             poll: float = 0.2) -> float:
    """Seconds until `condition` held; on timeout, fail with the job's and the daemons' logs."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"no {what} after {timeout} s\n{logs(run_dir, cluster)}")
        time.sleep(poll)
    return time.monotonic() - start


def started_steps(run_dir: Path) -> list[int]:
    path = run_dir / "sample_keys" / "rank0.jsonl"
    return [int(s) for s in re.findall(r'"step": (\d+)', path.read_text())] if path.exists() else []


def task_pids(job_id: str) -> list[int]:
    """The PIDs of the job step's tasks (the training processes) on this node."""
    shown = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, check=True)
    pids = [int(row.split()[0]) for row in shown.stdout.splitlines()[1:] if row.split()[2].isdigit()]
    assert pids, shown.stdout
    return pids


def finished(job_id: str) -> bool:
    return job_info(job_id)["JobState"] in FINAL_STATES


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Built before the jobs start: both ranks of a job would otherwise write the corpus at once."""
    folder = tmp_path_factory.mktemp("slurm-data") / "tiny"
    prepare_data(load_recipe(REPO / RECIPE, [f"data.dir={folder}"]))
    return folder


def test_sigusr1_requeues_and_the_job_resumes_at_the_exact_sample(cluster, data_dir, tmp_path):
    preempted, reference = tmp_path / "preempted", tmp_path / "reference"
    overrides = [f"data.dir={data_dir}", f"trainer.max_steps={MAX_STEPS}"]
    job = submit(preempted, *overrides)
    reference_job = submit(reference, *overrides)  # queued: it runs when the node is free

    wait_for(lambda: max(started_steps(preempted), default=-1) >= 0, 600, "the first step", preempted, cluster)
    tasks = task_pids(job)
    waited = wait_for(lambda: (preempted / "checkpoints" / "last.ckpt").exists()
                      and max(started_steps(preempted), default=-1) >= SIGNAL_AT, 600,
                      f"step {SIGNAL_AT} after last.ckpt", preempted, cluster, poll=0.01)
    # Frozen where they are, so that the signal comes while the job trains however fast the machine: a 9-step job
    # at 3.5 steps/s had finished before a signal sent at step 4 reached it. SLURM's own suspend would not do: a
    # suspended job takes no signal ("Job can not be altered now").
    for pid in tasks:
        os.kill(pid, signal.SIGSTOP)
    frozen_at = max(started_steps(preempted))
    # Every task of the job, not the batch shell: what the template's --signal=SIGUSR1@120 does before the limit.
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    for pid in tasks:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: finished(job) and finished(reference_job), JOB_TIMEOUT, "end of both jobs", reference, cluster)
    print(f"signalled {waited:.0f} s after submission")

    info, out = job_info(job), job_output(preempted)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", f"{info}\n{logs(preempted, cluster)}"
    assert job_info(reference_job)["JobState"] == "COMPLETED", logs(reference, cluster)
    assert re.findall(r"job \d+ segment (\d+)", out) == ["0", "1"], out  # both segments append to one log
    saved = re.search(r"SIGUSR1 at step (\d+): saved (\S+)", out)
    assert saved and f"requeued job {job}" in out, f"no checkpoint or no requeue line:\n{out}"
    step, path = int(saved.group(1)), saved.group(2)
    assert f"resuming from {path}" in out, out
    # The step running when the signal came was finished and saved: the requeued job starts right after it.
    starts = re.findall(r'"start": (\d+)', (preempted / "sample_keys" / "rank0.jsonl").read_text())
    assert [int(s) for s in starts] == [0, step], out
    # Saved at the end of the step running when it was frozen (or of the next one, frozen between two steps).
    assert SIGNAL_AT <= frozen_at < step <= frozen_at + 2 < MAX_STEPS, (frozen_at, step)

    # Across both ranks and both segments, every step trained on the samples the uninterrupted job used.
    assert read_sample_keys(preempted / "sample_keys") == read_sample_keys(reference / "sample_keys")
    final, uninterrupted = (checkpoint(run / "checkpoints" / "last.ckpt") for run in (preempted, reference))
    assert final["global_step"] == uninterrupted["global_step"] == MAX_STEPS
    for index, state in final["optimizer_states"][0]["state"].items():
        assert int(state["step"]) == int(uninterrupted["optimizer_states"][0]["state"][index]["step"]) == MAX_STEPS
    for name, value in final["state_dict"].items():
        torch.testing.assert_close(value, uninterrupted["state_dict"][name], msg=lambda m, name=name: f"{name}: {m}")


def test_max_time_stops_cleanly_before_the_time_limit(cluster, data_dir, tmp_path):
    run_dir = tmp_path / "timed"
    job = submit(run_dir, f"data.dir={data_dir}", "trainer.max_steps=100000",
                 f"trainer.max_time=00:00:00:{MAX_TIME_SECONDS:02d}", time_limit="00:04:00")
    wait_for(lambda: finished(job), 600, "end of the job", run_dir, cluster)
    info, out = job_info(job), job_output(run_dir)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{logs(run_dir, cluster)}"
    took = datetime.fromisoformat(info["EndTime"]) - datetime.fromisoformat(info["StartTime"])
    assert took.total_seconds() < 4 * 60, info
    saved = re.search(r"max_time at step (\d+): saved (\S+)", out)
    assert saved, out
    assert "Time limit reached" in out, out
    assert checkpoint(Path(saved.group(2)))["global_step"] == int(saved.group(1)) < 100000
