"""`paralign import` stopped by a signal mid-import (a real process, a real signal): no `.tmp` shard is left, and
a rerun writes every clip."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clips.shard_writer import shard_files
from paralign.cli import main
from tests.datamodules.conftest import make_records

ROOT = Path(__file__).resolve().parents[2]

# The real CLI, with the manifest importer made to hang after its first clip: that clip sits in an open `.tmp`
# shard when the signal comes. SIGINT gets Python's own handler, as in a terminal (a background job ignores it).
SLOW_IMPORT = """
import signal, sys, time
import prep.importers as importers
from paralign.cli import main

signal.signal(signal.SIGINT, signal.default_int_handler)
real = importers.IMPORTERS["manifest"]

def slow(root):
    for i, record in enumerate(real(root)):
        if i == 1:
            time.sleep(300)
        yield record

importers.IMPORTERS["manifest"] = slow
sys.exit(main(sys.argv[1:]))
"""


def _wait_for_tmp(out: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(out.glob("*.tar.tmp")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no .tmp shard appeared"
        time.sleep(0.05)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, -signal.SIGINT)])
def test_a_signal_mid_import_leaves_no_tmp_shard_and_a_rerun_completes(tmp_path, sig, status):
    records = make_records(tmp_path / "clips", 3)
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    args = ["import", "manifest", "--root", str(manifest), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", SLOW_IMPORT, *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_tmp(out, process)
        process.send_signal(sig)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == status
    assert sorted(p.name for p in out.iterdir()) == ["rejects.jsonl"]  # no .tmp, no shard under a final name
    assert main(args) == 0
    assert len(shard_files(out)) == 1 and json.loads((out / "manifest.json").read_text())["samples"] == 3
