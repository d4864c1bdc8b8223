"""A real SLURM (Debian's slurm-wlm, one node) runs the rendered sbatch script: SIGUSR1 -> checkpoint, requeue, resume.

Needs root and either slurm-wlm + munge installed or apt-get to install them (slurm/local_cluster.sh does it).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

from paralign.slurm import render_sbatch, submit

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "slurm" / "local_cluster.sh"

# The payload: srun runs `<PAYLOAD> train --recipe RECIPE run.dir=... trainer.*=... <OVERRIDES>`.
# For `paralign train`, set PAYLOAD = None (the environment's `paralign`). It must still be training when the signal
# comes: the tiny recipe needed trainer.max_steps=1500 (plus trainer.checkpoint_every_n_steps for last.ckpt).
PAYLOAD = f"{sys.executable} {Path(__file__).with_name('tiny_lightning_job.py')}"
RECIPE = "recipes/tiny.yaml"
MAX_STEPS = 150
OVERRIDES = [f"trainer.max_steps={MAX_STEPS}"]

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture(scope="module")
def cluster():
    """A single-node cluster in a fresh folder; SLURM_CONF points the clients at it while the tests run."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (slurmd, munged as user munge, apt-get)")
    # Not pytest's tmp_path: its parents are mode 0700, and munged (user munge) must reach its socket folder.
    folder = Path(tempfile.mkdtemp(prefix="paralign-slurm-"))
    started = subprocess.run([str(CLUSTER), "start", str(folder)], capture_output=True, text=True, timeout=600)
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


def job_info(job_id: str) -> dict[str, str]:
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                           check=True)
    return dict(re.findall(r"(\w+)=(\S*)", shown.stdout))


def wait_for(condition: Callable[[], bool], timeout: float, what: str, logs: Path) -> float:
    """Seconds until `condition` held; on timeout, fail with the job's logs."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            texts = "\n".join(f"--- {path}\n{path.read_text()}" for path in sorted(logs.glob("*.out")) +
                              sorted(logs.glob("*.err")))
            pytest.fail(f"no {what} after {timeout} s\n{texts}")
        time.sleep(0.5)
    return time.monotonic() - start


def test_sigusr1_checkpoints_requeues_and_the_job_resumes(cluster, tmp_path):
    run_dir = tmp_path / "run"
    script = render_sbatch(RECIPE, 1, 2, accelerator_gpu=False, run_dir=run_dir, time="00:15:00",
                           extra_args=OVERRIDES, launcher=PAYLOAD)
    job_id = submit(script, run_dir)
    logs = run_dir / "slurm"

    first_checkpoint = wait_for((run_dir / "checkpoints" / "last.ckpt").exists, 300, "last.ckpt", logs)
    # Signal the job's tasks (not the batch shell): what --signal=SIGUSR1@N does before the time limit.
    subprocess.run(["scancel", "--signal=USR1", job_id], check=True)
    finished = wait_for(lambda: job_info(job_id)["JobState"] in FINAL_STATES, 600, "end of the job", logs)
    print(f"first checkpoint after {first_checkpoint:.0f} s; job finished {finished:.0f} s after the signal")

    info = job_info(job_id)
    out = (logs / f"{job_id}.out").read_text()
    err = (logs / f"{job_id}.err").read_text()
    assert info["JobState"] == "COMPLETED", f"{info}\n{out}\n{err}"
    assert info["Restarts"] == "1", info
    # Both segments of the job append to the same log.
    assert re.findall(r"job \d+ segment (\d+)", out) == ["0", "1"], out
    assert "Handling auto-requeue signal" in out + err
    starts = [int(step) for step in re.findall(r"PAYLOAD start step=(\d+)", out)]
    assert len(starts) == 2 and starts[0] == 0, out
    assert 0 < starts[1] < MAX_STEPS, f"the requeued segment did not resume from the checkpoint:\n{out}"
    assert re.findall(r"PAYLOAD end step=(\d+)", out) == [str(MAX_STEPS)], out
