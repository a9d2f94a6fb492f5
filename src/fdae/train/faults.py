"""Fault injection for the reliability tests: real crashes at chosen moments.

Two environment variables, read by the trainer and the checkpoint writer; unset (the
normal case) they cost one dictionary lookup:

  FDAE_TEST_KILL_DURING_WRITE=step_00000004.pt
      the checkpoint writer writes half of that file's temporary copy, fsyncs it and
      kills its own process with SIGKILL (a `kill -9` in the middle of a write);
  FDAE_TEST_PAUSE_AFTER_STEP=N  with  FDAE_TEST_HANDSHAKE=DIR
      after optimizer step N the trainer writes DIR/paused (its pid) and waits until
      DIR/go exists, so a test can act on a run that provably holds its run directory
      (a handshake, not a sleep that races).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL_DURING_WRITE = "FDAE_TEST_KILL_DURING_WRITE"
PAUSE_AFTER_STEP = "FDAE_TEST_PAUSE_AFTER_STEP"
HANDSHAKE = "FDAE_TEST_HANDSHAKE"
PAUSE_LIMIT_S = 600.0  # a forgotten handshake must not hang a test run forever


def kill_during_write(path: Path, data: bytes, fh) -> None:
    """If asked for `path`, write half of `data` to `fh`, make it durable, and die."""
    if os.environ.get(KILL_DURING_WRITE) != path.name:
        return
    fh.write(data[: len(data) // 2])
    fh.flush()
    os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def wants_kill_during_write(path: Path) -> bool:
    return os.environ.get(KILL_DURING_WRITE) == path.name


def pause_after_step(step: int) -> None:
    """If asked for this step, announce the pause and wait for the test's go."""
    wanted = os.environ.get(PAUSE_AFTER_STEP)
    if wanted is None or int(wanted) != step:
        return
    folder = Path(os.environ[HANDSHAKE])
    (folder / "paused").write_text(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
