import argparse
import re
import subprocess
from pathlib import Path

import pytest

from paralign.cli import main
from paralign.commands import slurm as slurm_command
from paralign.slurm import SlurmError, render_sbatch, submit


def sbatch_options(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def srun_command(script: str) -> str:
    """The srun line with its continuation lines joined."""
    joined = script.replace("\\\n", " ")
    return next(line for line in joined.splitlines() if line.startswith("srun "))


def test_gpu_script_requests_one_task_per_gpu_signal_and_requeue(tmp_path):
    run_dir = tmp_path / "run"
    script = render_sbatch(
        "recipes/demo.yaml", 4, 8, partition="gpu", time="12:00:00", run_dir=run_dir, signal_seconds=300,
        extra_args=["trainer.max_steps=1000", "data.batch_size=16"], cpus_per_task=6,
    )
    options = sbatch_options(script)
    for expected in ("--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=6", "--time=12:00:00",
                     "--partition=gpu", "--signal=SIGUSR1@300", "--requeue", "--open-mode=append",
                     f"--output={run_dir}/slurm/%j.out", f"--error={run_dir}/slurm/%j.err"):
        assert expected in options
    srun = srun_command(script)
    assert "train --recipe recipes/demo.yaml" in srun
    for expected in (f"run.dir={run_dir}", "trainer.num_nodes=4", "trainer.devices=8", "trainer.accelerator=gpu",
                     "trainer.max_steps=1000", "data.batch_size=16"):
        assert expected in srun.split()
    assert "{{" not in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_cpu_script_requests_no_gpus_and_leaves_unset_options_to_the_cluster(tmp_path):
    script = render_sbatch("recipes/tiny.yaml", 1, 2, run_dir=tmp_path, accelerator_gpu=False)
    options = sbatch_options(script)
    assert not [option for option in options if option.startswith(("--gpus", "--partition", "--cpus-per-task"))]
    assert "--signal=SIGUSR1@120" in options and "--time=24:00:00" in options
    assert "trainer.accelerator=cpu" in srun_command(script).split()


def test_run_dir_defaults_to_a_fixed_absolute_folder_named_after_the_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("r.yaml").write_text("name: little\nrun: {root: experiments}\ntasks: {emotion: {}}\n")
    script = render_sbatch("r.yaml", 1, 1)
    run_dir = next(arg for arg in srun_command(script).split() if arg.startswith("run.dir="))
    assert re.fullmatch(rf"run\.dir={tmp_path}/experiments/little/\d{{8}}-\d{{6}}", run_dir)
    assert f"--output={run_dir.removeprefix('run.dir=')}/slurm/%j.out" in sbatch_options(script)


def test_launcher_and_overrides_are_shell_quoted(tmp_path):
    script = render_sbatch("recipes/tiny.yaml", 1, 1, run_dir=tmp_path, launcher="/opt/py job.py",
                           extra_args=["run.name=my run"])
    assert srun_command(script).startswith("srun --kill-on-bad-exit=1 /opt/py job.py train")
    assert "'run.name=my run'" in srun_command(script)


@pytest.mark.parametrize("kwargs, problem", [
    ({"nodes": 0}, "nodes and gpus"),
    ({"gpus": 0}, "nodes and gpus"),
    ({"extra_args": ["max_steps"]}, "key=value"),
    ({"run_dir": "/tmp/with space"}, "whitespace"),
    ({"signal_seconds": 0}, "signal_seconds"),
    ({"extra_args": ["trainer.devices=4"]}, "set from the nodes/gpus"),
    ({"extra_args": ["run.dir=/x"]}, "set from the nodes/gpus"),
])
def test_bad_input_is_refused_with_the_reason(kwargs, problem):
    arguments = {"nodes": 1, "gpus": 1, "run_dir": "/tmp/run", **kwargs}
    with pytest.raises(ValueError, match=problem):
        render_sbatch("recipes/tiny.yaml", arguments.pop("nodes"), arguments.pop("gpus"), **arguments)


def test_submit_writes_the_script_into_the_run_folder_and_parses_the_job_id(tmp_path):
    fake_sbatch = tmp_path / "sbatch"
    fake_sbatch.write_text('#!/bin/sh\n[ "$1" = --parsable ] && [ -f "$2" ] && echo "4242;cluster"\n')
    fake_sbatch.chmod(0o755)
    run_dir = tmp_path / "run"
    assert submit("#!/bin/bash\necho hi\n", run_dir, sbatch=str(fake_sbatch)) == "4242"
    assert (run_dir / "slurm" / "job.sbatch").read_text() == "#!/bin/bash\necho hi\n"


def test_submit_without_sbatch_says_so(tmp_path):
    with pytest.raises(SlurmError, match="not found on PATH"):
        submit("#!/bin/bash\n", tmp_path, sbatch="no-such-sbatch-here")


def test_submit_reports_what_sbatch_refused(tmp_path):
    failing = tmp_path / "sbatch"
    failing.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(SlurmError, match="invalid partition"):
        submit("#!/bin/bash\n", tmp_path / "run", sbatch=str(failing))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    slurm_command.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_dry_prints_the_script(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("trainer: {}\ntasks: {emotion: {}}\n")
    args = parse(["slurm", "--recipe", str(recipe), "--nodes", "2", "--gpus", "4", "--dry", "--signal-seconds", "60",
                  f"run.dir={tmp_path / 'run'}", "trainer.max_steps=7"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("#!/bin/bash")
    assert "--signal=SIGUSR1@60" in sbatch_options(printed)
    assert f"--output={tmp_path / 'run'}/slurm/%j.out" in sbatch_options(printed)
    srun = srun_command(printed).split()
    assert "trainer.max_steps=7" in srun
    assert [arg for arg in srun if arg.startswith("run.dir=")] == [f"run.dir={tmp_path / 'run'}"]
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_missing_recipe(tmp_path):
    with pytest.raises(SystemExit, match="^error: recipe not found"):
        main(["slurm", "--recipe", str(tmp_path / "nope.yaml"), "--nodes", "1", "--gpus", "1", "--dry"])


@pytest.mark.parametrize("override, reason", [
    ("max_steps", "key=value"),
    ("trainer.max_stepz=3", "max_stepz"),
    ("trainer.devices=4", "set from the nodes/gpus"),
])
def test_cli_refuses_bad_overrides_before_submitting(tmp_path, override, reason):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("trainer: {}\ntasks: {emotion: {}}\n")
    with pytest.raises(SystemExit, match=f"^error: .*{reason}"):
        main(["slurm", "--recipe", str(recipe), "--nodes", "1", "--gpus", "1", "--dry", override])
