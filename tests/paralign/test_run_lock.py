"""One run per run folder, even when several start at once on a stale or half-written lock."""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import socket

import pytest

from paralign.run_lock import LOCK_NAME, RunFolderInUse, run_lock


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _contender(run_dir: str, start, results) -> None:
    start.wait()
    try:
        with run_lock(run_dir):
            results.put("took it")
            start.wait()  # hold it until every contender has tried
    except RunFolderInUse:
        results.put("in use")
        start.wait()


def test_of_runs_starting_at_once_on_a_stale_lock_exactly_one_takes_it(tmp_path):
    run = tmp_path / "run"
    for attempt in range(3):
        run.mkdir(exist_ok=True)
        (run / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
        ctx = multiprocessing.get_context("fork")
        start, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_contender, args=(run, start, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes = sorted(results.get(timeout=5) for _ in procs)
        assert outcomes == ["in use", "in use", "in use", "took it"], f"attempt {attempt}: {outcomes}"
        assert not (run / LOCK_NAME).exists()  # released on exit


def test_a_lock_file_still_empty_is_a_holder_not_a_stale_lock(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / LOCK_NAME, os.O_CREAT | os.O_RDWR)  # a run between creating the file and writing it
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RunFolderInUse, match="in use by a run that is starting"):
            with run_lock(run):
                pass
    finally:
        os.close(fd)
    with run_lock(run):  # its holder died before writing: the empty file is taken over
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
