"""The Makefile's commands as `make -n` prints them (nothing run)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tensorboard_command(*variables: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["make", "-n", "tensorboard", *variables], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, **(env or {})}).stdout
    (line,) = [line for line in out.splitlines() if "tensorboard --logdir" in line]
    return line


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_tensorboard_listens_on_localhost_unless_asked_otherwise():
    default = _tensorboard_command(env={"HOST": "0.0.0.0", "PORT": "80"})  # a shell's HOST / PORT do not leak in
    assert "--bind_all" not in default
    assert re.search(r"--host 127\.0\.0\.1\b", default) and re.search(r"--port 6006\b", default)
    shared = _tensorboard_command("TB_HOST=0.0.0.0", "TB_PORT=6123")
    assert re.search(r"--host 0\.0\.0\.0\b", shared) and re.search(r"--port 6123\b", shared)
