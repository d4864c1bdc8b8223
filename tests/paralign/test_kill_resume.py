"""kill -9 in the middle of `paralign train` (the real CLI, a subprocess), then the same command again in the same
run folder: it resumes from last.ckpt, replays the steps lost with the process, and ends exactly where an
uninterrupted run ends (same samples at every step, same step count, same optimizer state and weights)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from callbacks.sample_keys import read_sample_keys

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS = 9
EVERY = 3  # last.ckpt at steps 3, 6 and 9; the tiny recipe's epochs are 4 steps, so checkpoints fall mid-epoch
KILL_AT = 5  # kill once step 5 has started: steps 3 and 4 were trained after the checkpoint at step 3 and are lost


def paralign() -> list[str]:
    script = Path(sys.executable).parent / "paralign"
    return [str(script)] if script.exists() else [sys.executable, "-m", "paralign.cli"]


def train_command(run_dir: Path, data_dir: Path) -> list[str]:
    return [*paralign(), "train", "--recipe", "recipes/tiny.yaml", f"run.dir={run_dir}", f"data.dir={data_dir}",
            f"trainer.max_steps={MAX_STEPS}", f"callbacks.last_checkpoint.every_n_train_steps={EVERY}",
            "trainer.limit_val_batches=0", "callbacks.sample_keys={}"]


def run_to_end(command: list[str], log: Path) -> None:
    with open(log, "a") as out:
        done = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{log.read_text()[-4000:]}"


def logged_steps(run_dir: Path) -> list[int]:
    path = run_dir / "sample_keys" / "rank0.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r["step"] for r in records if "step" in r]


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def kill_after_checkpoint(command: list[str], run_dir: Path, log: Path) -> int:
    """Start training, SIGKILL it once step KILL_AT has started (after last.ckpt exists); return the last step
    that had started."""
    last = run_dir / "checkpoints" / "last.ckpt"
    with open(log, "a") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while not (last.exists() and max(logged_steps(run_dir), default=-1) >= KILL_AT):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"training ended ({process.returncode}) or stalled before step {KILL_AT}:\n"
                            f"{log.read_text()[-4000:]}")
            time.sleep(0.01)
        # Frozen at once, so that the kill falls where the condition was seen however fast the machine
        process.send_signal(signal.SIGSTOP)
        killed_at = max(logged_steps(run_dir))
        process.kill()  # SIGKILL: no handler, no final checkpoint
        process.wait()
    return killed_at


def test_kill_9_then_restart_continues_at_the_next_unseen_sample(tmp_path):
    data = tmp_path / "data"
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_to_end(train_command(reference, data), tmp_path / "reference.log")

    killed_at = kill_after_checkpoint(train_command(resumed, data), resumed, tmp_path / "resumed.log")
    saved_step = checkpoint(resumed / "checkpoints" / "last.ckpt")["global_step"]
    print(f"killed while step {killed_at} ran; last.ckpt holds step {saved_step}")
    assert saved_step % EVERY == 0 and 0 < saved_step < killed_at, "the kill must fall between two checkpoints"
    before_restart = read_sample_keys(resumed / "sample_keys")

    run_to_end(train_command(resumed, data), tmp_path / "resumed.log")  # the same command, the same run folder
    expected = read_sample_keys(reference / "sample_keys")
    assert sorted(expected) == list(range(MAX_STEPS))
    starts = [json.loads(line)["start"] for line in (resumed / "sample_keys" / "rank0.jsonl").read_text().splitlines()
              if "start" in json.loads(line)]
    assert starts == [0, saved_step], "the restart must resume from last.ckpt"
    # The lost steps were trained on the samples the uninterrupted run used, and are replayed on the same ones.
    assert {s: before_restart[s] for s in range(saved_step, killed_at + 1)} == \
        {s: expected[s] for s in range(saved_step, killed_at + 1)}
    assert read_sample_keys(resumed / "sample_keys") == expected  # no sample skipped or repeated

    final, uninterrupted = (checkpoint(run / "checkpoints" / "last.ckpt") for run in (resumed, reference))
    assert final["global_step"] == uninterrupted["global_step"] == MAX_STEPS
    adam, adam_reference = final["optimizer_states"][0]["state"], uninterrupted["optimizer_states"][0]["state"]
    assert adam.keys() == adam_reference.keys() and adam
    for index, state in adam.items():
        assert int(state["step"]) == int(adam_reference[index]["step"]) == MAX_STEPS
        torch.testing.assert_close(state["exp_avg_sq"], adam_reference[index]["exp_avg_sq"])
    weights, weights_reference = final["state_dict"], uninterrupted["state_dict"]
    assert weights.keys() == weights_reference.keys()
    for name, value in weights.items():
        torch.testing.assert_close(value, weights_reference[name], msg=lambda m, name=name: f"{name}: {m}")


def test_sigterm_checkpoints_and_exits_non_zero_without_validating(tmp_path):
    """`paralign train && paralign eval` must not go on after a preemption: SIGTERM saves, stops, exits 143."""
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    command = [*paralign(), "train", "--recipe", "recipes/tiny.yaml", f"run.dir={run_dir}",
               f"data.dir={tmp_path / 'data'}", "trainer.max_steps=400", "trainer.val_check_interval=1",
               "callbacks.sample_keys={}"]
    with open(log, "a") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while max(logged_steps(run_dir), default=-1) < 2:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM
    text = log.read_text()
    assert "stopped by SIGTERM" in text  # at a step end, or (Lightning's stop) during validation
    saved = list(run_dir.glob("hpc_ckpt_*.ckpt"))
    assert len(saved) == 1 and checkpoint(saved[0])["global_step"] < 400
