"""One trainer per run directory: an exclusive lock on RUN_DIR/.lock.

Two trainers (or a run and a `--resume` of it) writing one run directory would overwrite
each other's checkpoints and interleave their logs. The training process (rank 0 of a
DDP run) holds an exclusive `fcntl.flock` on RUN_DIR/.lock for its whole life; the file
names the holder (pid, host, start time, command line). The kernel drops the lock when
the process ends however it ends (exit, exception, kill -9), so a crash never leaves a
run locked; the file it leaves behind is only a note, reported as a stale lock of a
process that is gone and overwritten by the next holder.

Where `flock` is not supported (some network filesystems answer ENOLCK/EOPNOTSUPP), the
file's contents decide: a holder on this host whose pid is alive, or on another host,
blocks the run; a holder on this host whose pid is gone is stale and taken over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fdae.errors import FdaeError, writing

LOCK_NAME = ".lock"


@dataclass
class Holder:
    pid: int
    host: str
    started: str = ""
    command: str = ""

    def describe(self) -> str:
        since = f" since {self.started}" if self.started else ""
        cmd = f" ({self.command})" if self.command else ""
        return f"process {self.pid} on host {self.host}{since}{cmd}"

    def alive_here(self) -> bool | None:
        """True/False for a process of this host; None when it runs elsewhere (unknowable)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
        return True


def read_holder(path: Path) -> Holder | None:
    try:
        info = json.loads(path.read_text())
        return Holder(int(info["pid"]), str(info["host"]), str(info.get("started", "")),
                      str(info.get("command", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunLock:
    """`RunLock(run_dir).acquire()` ... `.release()`; also a context manager."""

    def __init__(self, run_dir: str | Path, say: Callable[[str], None] | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.say = say or (lambda msg: print(msg, file=sys.stderr))
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        fix = "choose a writable --run-dir"
        for _ in range(10):  # retried only when the file was replaced while we locked it
            with writing(self.path, fix):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = self._flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if locked is False:
                holder = read_holder(self.path)
                os.close(fd)
                raise self._busy(holder)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file as we opened it
                os.close(fd)
                continue
            previous = read_holder(self.path)
            if previous is not None and previous.pid != os.getpid():
                alive = previous.alive_here()
                if locked is None and alive is not False:  # no flock here: trust the note
                    os.close(fd)
                    raise self._busy(previous)
                self.say(f"note: {self.path} named {previous.describe()}, which no longer holds it "
                         f"(it ended without releasing it); taking it over")
            self.fd = fd
            self._write_holder()
            return self
        raise FdaeError(f"could not lock {self.path}: other processes keep replacing it; try again")

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: locked; False: another process holds it; None: flock unsupported here."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise

    def _busy(self, holder: Holder | None) -> FdaeError:
        who = holder.describe() if holder is not None else "another process"
        return FdaeError(
            f"run directory {self.run_dir} is in use by {who}: one trainer at a time may write a run. Wait for it "
            f"to finish (or stop it), then `fdae train --resume {self.run_dir}`; or choose another --run-dir"
        )

    def _write_holder(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]}
        assert self.fd is not None
        with writing(self.path, "choose a writable --run-dir"):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, (json.dumps(info) + "\n").encode(), 0)
            os.fsync(self.fd)

    def release(self) -> None:
        """Remove the note and drop the lock (unlink first: a waiter that opened the old
        file notices the swap and retries on the new one)."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
