"""A non-editable install works: the wheel holds every package and the files the code reads beside itself, and
`paralign train` runs from it in another folder, with no checkout on the path."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.test_layering import LAYERS

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = ("paralign/sbatch.tmpl", "paralign/model_configs/meta-llama--Meta-Llama-3-8B-Instruct.json",
              "prep/sentences.txt", "prep/prompts/qa_generate_v1.txt", "prep/prompts/qa_generate_v2.txt")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (path,) = out.glob("paralign-*.whl")
    return path


@pytest.mark.slow
def test_wheel_holds_packages_and_their_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in LAYERS:  # every top-level package
        assert f"{package}/__init__.py" in names
    for data in DATA_FILES:
        assert data in names, f"{data} is read by the code but missing from the wheel"
    assert not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "paralign = paralign.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_installed_wheel_trains_from_another_folder(wheel, tmp_path):
    # A fresh virtual environment with the wheel installed into it. Its dependencies come from this environment's
    # site-packages through a .pth line, which adds the folder as a plain path: the editable install's own .pth
    # hook there is not run, so the checkout cannot be imported.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([python, "-c", "import paralign, prep; print(paralign.__file__, prep.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(path.startswith(site) for path in where), where
    run = subprocess.run(
        [python, "-m", "paralign.cli", "train", "--recipe", str(ROOT / "recipes/tiny.yaml"), "trainer.max_steps=2",
         "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "eval.after_train=false", "run.dir=run"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file() and (work / "data" / "tiny").is_dir()
