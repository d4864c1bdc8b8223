"""One run per run folder: a lock file ``<run.dir>/run.lock`` holding the holder's host, PID and SLURM job.

Two ``paralign train`` on one folder would both write ``last.ckpt`` (Lightning then makes ``last-v1.ckpt``),
duplicate best-k files and two TensorBoard event files, silently. The second one now stops at once. A lock whose
holder is gone (a process of this host that no longer runs, or the same SLURM job requeued on another node) is taken
over with a warning; a lock of a live holder, or of another host that cannot be checked, is an error saying how to
clear it. The lock is an exclusive ``flock`` on the file, taken atomically: of two runs starting at once, one gets
it, and a file still empty (its holder writing it) is a holder too. Only the first rank takes it: the other ranks of
the same run share the folder by design.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
LOCK_NAME = "run.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK")


class RunFolderInUse(RuntimeError):
    """Another live run holds the folder."""


def _first_rank() -> bool:
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale(holder: dict) -> bool:
    """A holder whose flock is free (so not a live paralign of this host): gone if this very SLURM job wrote it before
    a requeue, or its process of this host no longer runs; another host's may only be invisible to our locks."""
    job = os.environ.get("SLURM_JOB_ID")
    if job and holder.get("slurm_job") == job:
        return True
    return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1)))


def _holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _in_use(run_dir: Path, path: Path, holder: dict) -> RunFolderInUse:
    who = (f"PID {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})" if holder
           else "a run that is starting")
    return RunFolderInUse(f"run folder {run_dir} is in use by {who}: wait for that run, use another run.dir, or "
                          f"delete {path} if it is gone")


def _take(run_dir: Path, path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive flock: the kernel lets one process at a time hold it
    and drops it when the holder dies, so two runs starting at once cannot both take a stale lock over."""
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(run_dir, path, _holder(path)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file as we opened it: the lock is the file now at that name
            return fd
        os.close(fd)


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run_dir>/run.lock`` for the block (first rank only); see the module docstring."""
    if not _first_rank():
        yield
        return
    path = run_dir / LOCK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _take(run_dir, path)
    except OSError as err:  # read-only, no such parent, no permission: say so before any data is built
        raise OSError(err.errno, f"run.dir={run_dir} is not a writable folder ({err.strerror})") from None
    try:
        holder = _holder(path)
        if holder and not _stale(holder):
            raise _in_use(run_dir, path, holder)
        if holder:
            log.warning("taking over the stale lock %s (held by %s)", path, holder)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
        path.unlink(missing_ok=True)  # while still holding the flock: a waiting opener sees the inode change
    finally:
        os.close(fd)
