"""One run per run folder: a lock file ``<run.dir>/run.lock`` holding the holder's host, PID and SLURM job.

Two ``paralign train`` on one folder would both write ``last.ckpt`` (Lightning then makes ``last-v1.ckpt``),
duplicate best-k files and two TensorBoard event files, silently. The second one now stops at once. A lock whose
holder is gone (a process of this host that no longer runs, or the same SLURM job requeued on another node) is taken
over with a warning; a lock of a live holder, or of another host that cannot be checked, is an error saying how to
clear it. Only the first rank takes it: the other ranks of the same run share the folder by design.
"""
from __future__ import annotations

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
    job = os.environ.get("SLURM_JOB_ID")
    if job and holder.get("slurm_job") == job:  # this very job, requeued: its earlier run is over
        return True
    return holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid", -1)))


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run_dir>/run.lock`` for the block (first rank only); see the module docstring."""
    if not _first_rank():
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".write-test").touch()
        (run_dir / ".write-test").unlink()
    except OSError as err:  # read-only, no such parent, no permission: say so before any data is built
        raise OSError(err.errno, f"run.dir={run_dir} is not a writable folder ({err.strerror})") from None
    path = run_dir / LOCK_NAME
    me = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            if not holder or _stale(holder):
                log.warning("taking over the stale lock %s (held by %s)", path, holder or "nobody readable")
                path.unlink(missing_ok=True)
                continue
            raise RunFolderInUse(
                f"run folder {run_dir} is in use by PID {holder.get('pid')} on {holder.get('host')} (since "
                f"{holder.get('since')}): wait for that run, use another run.dir, or delete {path} if it is gone"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
