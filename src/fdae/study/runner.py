"""Run a study's cells: K at a time on this machine, or as Slurm jobs through submitit.

Stop it any time (Ctrl-C, a killed job, a lost node) and start it again: cells with
results are skipped, cells with checkpoints resume, failed cells are reported with their
log and run again only with `retry_failed`. Progress lines say how many cells are done,
running and failed, and an ETA from the cells finished in this invocation.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from fdae.errors import FdaeError
from fdae.study.cell import FAILED, INTERRUPTED, RESULTS, write_spec
from fdae.study.spec import Cell, Study


@dataclass
class Status:
    done: list[Cell]
    failed: list[Cell]
    todo: list[Cell]

    def line(self) -> str:
        total = len(self.done) + len(self.failed) + len(self.todo)
        return progress_line(len(self.done), total, 0, len(self.failed), len(self.todo))


def progress_line(done: int, total: int, running: int, failed: int, waiting: int, eta_s: float | None = None) -> str:
    eta = "" if eta_s is None else f", ETA {_duration(eta_s)}"
    return f"{done}/{total} done, {running} running, {failed} failed, {waiting} waiting{eta}"


def _duration(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def status(study: Study) -> Status:
    done, failed, todo = [], [], []
    for cell in study.cells():
        d = study.cell_dir(cell)
        if (d / RESULTS).is_file():
            done.append(cell)
        elif (d / FAILED).is_file():
            failed.append(cell)
        else:
            todo.append(cell)
    return Status(done, failed, todo)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # pragma: no cover - a broken CUDA install: run on CPU
        return 0


def run_study(study: Study, *, jobs: int | None = None, retry_failed: bool = False, launcher: str | None = None,
              say: Callable[[str], None] = print, poll_s: float = 2.0) -> Status:
    """Run every unfinished cell; returns the final status."""
    st = status(study)
    if st.failed:
        for cell in st.failed:
            say(f"failed before: {cell.key} (log: {study.cell_dir(cell) / 'log.txt'})")
        if retry_failed:
            for cell in st.failed:
                (study.cell_dir(cell) / FAILED).unlink(missing_ok=True)
            st = status(study)
        else:
            say("pass --retry-failed to run the failed cells again")
    kind = launcher or study.launcher.get("kind", "local")
    say(f"study {study.name}: {len(study.cells())} cells in {study.out}; " + st.line())
    if not st.todo:
        return st
    if kind == "slurm":
        _run_slurm(study, st, say, poll_s)
    else:
        _run_local(study, st, jobs, say, poll_s)
    final = status(study)
    say(f"study {study.name}: " + final.line())
    for cell in final.failed:
        say(f"failed: {cell.key} (log: {study.cell_dir(cell) / 'log.txt'})")
    return final


def _run_local(study: Study, st: Status, jobs: int | None, say, poll_s: float) -> None:
    from fdae.cli import python_module_command

    gpus = _gpu_count()
    k = int(jobs or study.launcher.get("jobs") or max(1, gpus))
    threads = str(study.launcher.get("threads", 1))
    slots = list(range(k))
    queue = list(st.todo)
    running: dict[int, tuple[subprocess.Popen, Cell, float]] = {}
    durations: list[float] = []
    done, failed = len(st.done), len(st.failed)
    last_line = 0.0
    try:
        while queue or running:
            while queue and slots:
                slot, cell = slots.pop(0), queue.pop(0)
                cell_dir = study.cell_dir(cell)
                cell_dir.mkdir(parents=True, exist_ok=True)
                device = "cuda" if gpus else "cpu"
                spec = write_spec(cell_dir, cell.to_dict(), dict(study.eval), device)
                argv, env = python_module_command("fdae.study.cell", str(spec))
                env["OMP_NUM_THREADS"] = threads
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
                with open(cell_dir / "log.txt", "ab") as log:
                    # its own session: a Ctrl-C reaches the runner only, which stops the cells
                    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
                running[slot] = (proc, cell, time.time())
            time.sleep(poll_s)
            for slot, (proc, cell, start) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[slot]
                slots.append(slot)
                if (study.cell_dir(cell) / RESULTS).is_file():
                    done += 1
                    durations.append(time.time() - start)
                elif proc.returncode == INTERRUPTED:
                    say(f"interrupted: {cell.key} (it resumes when the study is started again)")
                else:
                    failed += 1
                    say(f"failed: {cell.key} (exit {proc.returncode}; log: {study.cell_dir(cell) / 'log.txt'})")
            if time.time() - last_line > 30 or not (queue or running):
                eta = None
                if durations:  # the mean cell so far, for the waiting cells and the rest of the running ones
                    mean = sum(durations) / len(durations)
                    left = sum(max(0.0, mean - (time.time() - start)) for _, _, start in running.values())
                    eta = (len(queue) * mean + left) / k
                total = len(st.done) + len(st.failed) + len(st.todo)
                say(progress_line(done, total, len(running), failed, len(queue), eta))
                last_line = time.time()
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            proc.terminate()
        for proc, _, _ in running.values():
            proc.wait()
        say("stopped; run the same command again to finish the study (finished cells are kept, "
            "interrupted ones resume from their checkpoints)")
        raise


def _run_slurm(study: Study, st: Status, say, poll_s: float) -> None:
    """One Slurm job per cell through submitit; waits for them and reports."""
    try:
        import submitit
    except ImportError:
        raise FdaeError("the Slurm launcher needs submitit: pip install submitit (or pip install fdae[slurm])") from None
    from fdae.study.cell import CellJob

    opts = study.launcher
    folder = study.out / "slurm" / "%j"
    # cluster: None picks Slurm where sbatch exists; "local" runs the same job machinery
    # (pickled calls, job folders, logs) as local processes (the tests use it).
    executor = submitit.AutoExecutor(folder=folder, cluster=opts.get("cluster"))
    gpus = int(opts.get("gpus_per_job", 1))
    params = {"timeout_min": int(opts.get("time_min", 60)), "cpus_per_task": int(opts.get("cpus_per_task", 4)),
              "name": f"fdae-{study.name}", "mem_gb": opts.get("mem_gb"),
              "slurm_partition": opts.get("partition"), "slurm_gpus_per_node": gpus or None,
              "slurm_additional_parameters": dict(opts.get("slurm_extra") or {})}
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    device = "cuda" if executor.cluster == "slurm" and int(opts.get("gpus_per_job", 1)) > 0 else "cpu"
    jobs, attached = [], []
    for cell in st.todo:
        cell_dir = study.cell_dir(cell)
        earlier = _earlier_job(cell_dir, executor.cluster, folder)
        if earlier is not None:  # submitted by an earlier invocation and still queued or running
            attached.append((cell, earlier))
            continue
        cell_dir.mkdir(parents=True, exist_ok=True)
        spec = write_spec(cell_dir, cell.to_dict(), dict(study.eval), device)
        job = executor.submit(CellJob(), str(spec))
        (cell_dir / JOB_FILE).write_text(f"{job.job_id}\n")
        jobs.append((cell, job))
    for cell, job_id in attached:
        say(f"still queued or running: {cell.key} (job {job_id}); not submitted again")
    say(f"submitted {len(jobs)} jobs ({executor.cluster}); logs in {study.out / 'slurm'}")
    for cell, job in jobs:
        try:
            job.result()
        except Exception as err:  # the job's own failed.json names the error; say where its log is
            say(f"failed: {cell.key} ({type(err).__name__}; job log: {job.paths.stderr})")
    # no job object to wait on across invocations: poll the scheduler (sacct at most twice a
    # minute on a real cluster, so a long wait does not load its controller)
    every = poll_s if executor.cluster == "local" else max(poll_s, 30.0)
    for cell, job_id in attached:
        while _job_active(job_id, executor.cluster, folder) and not _cell_finished(study.cell_dir(cell)):
            time.sleep(every)


JOB_FILE = "slurm_job.txt"
# Slurm states after which a job will not run the cell any more (sacct/squeue names);
# any other state, or none that can be read, counts as active, so a cell is never
# trained by two jobs at once
_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
             "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}


def _cell_finished(cell_dir) -> bool:
    return (cell_dir / RESULTS).is_file() or (cell_dir / FAILED).is_file()


def _earlier_job(cell_dir, cluster: str, folder) -> str | None:
    """The job id an earlier invocation submitted for this cell, if that job is still active."""
    path = cell_dir / JOB_FILE
    if not path.is_file():
        return None
    job_id = path.read_text().strip()
    return job_id if job_id and _job_active(job_id, cluster, folder) else None


def _job_active(job_id: str, cluster: str, folder) -> bool:
    """Ask the scheduler whether a job from an earlier invocation is queued or running. With
    submitit's local cluster the job id is the process id of the job."""
    if cluster == "local":
        try:
            os.kill(int(job_id), 0)
        except (ValueError, ProcessLookupError):
            return False
        except PermissionError:  # alive, owned by someone else: not ours any more
            return False
        return not _is_zombie(int(job_id))
    state = _slurm_state(job_id, folder)
    return state.split(" ")[0] not in _TERMINAL


def _slurm_state(job_id: str, folder) -> str:
    """The job's state from sacct (through submitit's watcher), else from squeue (a job
    squeue no longer lists has ended); "UNKNOWN" when neither answers."""
    import submitit

    try:
        state = submitit.SlurmJob(folder=folder, job_id=job_id).get_info(mode="force").get("State", "")
    except Exception:  # submitit also swallows sacct errors and returns no state
        state = ""
    if state:
        return state
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "UNKNOWN"
    if out.returncode != 0 and "Invalid job id" in out.stderr:
        return "COMPLETED"  # forgotten by the controller: long over
    if out.returncode != 0:
        return "UNKNOWN"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "COMPLETED"


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
