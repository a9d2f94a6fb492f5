"""One study cell, start to finish: train (or resume), evaluate, write `results.json`.

The same function runs in a local child process (`python -m fdae.study.cell CELL.json`)
and in a Slurm job (submitit pickles `run_cell` and calls it on the node). A cell's
folder holds `cell.json` (what to run), `run/` (an ordinary run directory), `log.txt`,
and at the end `results.json`; a failure leaves `failed.json` with the error instead.
A cell whose `results.json` exists is done and never run again; one with checkpoints
but no results is resumed from its newest checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

RESULTS, FAILED, SPEC = "results.json", "failed.json", "cell.json"
INTERRUPTED = 3  # exit status of a cell stopped by a signal: resumed on the next start, not failed


class Interrupted(Exception):
    """Training stopped by a signal (a checkpoint was saved): resume later, do not evaluate."""


def write_spec(cell_dir: Path, cell: dict[str, Any], eval_settings: dict[str, Any], device: str) -> Path:
    from fdae.metrics.utils import write_json

    path = cell_dir / SPEC
    write_json({"cell": cell, "eval": eval_settings, "device": device}, path)
    return path


def _train(cell_dir: Path, cell: dict[str, Any], device: str):
    from fdae.study.spec import Cell, cell_config
    from fdae.train.checkpoint import run_config
    from fdae.train.loop import train

    run_dir = cell_dir / "run"
    if (run_dir / "config.yaml").is_file():  # started before: resume (from step 0 if no checkpoint was saved)
        cfg = run_config(run_dir, [f"train.device={device}"])
        return train(cfg, run_dir, resume=True, progress=False, tensorboard=False, resume_previous=True)
    cfg = cell_config(Cell(**cell))
    cfg.train.device = device
    return train(cfg, run_dir, progress=False, tensorboard=False)


def run_cell(spec_path: str | Path) -> dict[str, Any]:
    """Run the cell described by `spec_path` (its `cell.json`); returns its results."""
    from fdae.metrics import evaluate
    from fdae.metrics.protocol import summary
    from fdae.metrics.utils import to_builtin, write_json
    from fdae.train.checkpoint import load_run

    spec_path = Path(spec_path)
    cell_dir = spec_path.parent
    spec = json.loads(spec_path.read_text())
    cell, ev, device = spec["cell"], spec["eval"], spec.get("device", "cpu")
    if (cell_dir / RESULTS).is_file():
        return json.loads((cell_dir / RESULTS).read_text())
    (cell_dir / FAILED).unlink(missing_ok=True)
    try:
        t0 = time.time()
        result = _train(cell_dir, cell, device)
        if result.reason not in ("done", "finished_before"):
            raise Interrupted(f"training stopped ({result.reason}) at step {result.step}")
        train_s = time.time() - t0
        loaded = load_run(cell_dir / "run", device=device)
        method, dataset, cfg = loaded.method, loaded.dataset, loaded.cfg
        t1 = time.time()
        res = evaluate(dataset, method.encode, metrics=ev.get("metrics"), protocol=ev.get("protocol", "dlib"),
                       random_state=int(cell["seed"]), groups=method.groups,
                       num_train=int(ev.get("num_train", cfg.eval.num_train)),
                       num_test=int(ev.get("num_test", cfg.eval.num_test)),
                       num_votes_train=ev.get("num_votes_train", cfg.eval.num_votes_train),
                       num_votes_eval=ev.get("num_votes_eval", cfg.eval.num_votes_eval),
                       dci_mode=ev.get("dci", "exact"), device=device, n_jobs=1,
                       concepts=getattr(method, "paper_concepts", None))
        out = {"cell": cell, "step": loaded.step, "final_loss": result.last_metrics.get("loss"),
               "train_seconds": round(train_s, 1), "eval_seconds": round(time.time() - t1, 1),
               "protocol": res["protocol"], "dci_mode": ev.get("dci", "exact"), "scores": summary(res),
               "evaluation": to_builtin(res), "run_dir": str(cell_dir / "run")}
        write_json(out, cell_dir / RESULTS)
        return out
    except Interrupted:
        raise
    except Exception as err:  # a real failure; KeyboardInterrupt / SystemExit are interruptions
        write_json({"cell": cell, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
                    "log": str(cell_dir / "log.txt")}, cell_dir / FAILED)
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from fdae.errors import FdaeError

    try:
        out = run_cell(argv[0])
    except (Interrupted, KeyboardInterrupt) as err:
        print(f"fdae study cell: interrupted ({err}); it resumes when the study is started again", file=sys.stderr)
        return INTERRUPTED
    except FdaeError as err:
        print(f"fdae study cell: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"cell": out["cell"]["key"], "scores": out["scores"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())


class CellJob:
    """A cell as a Slurm job (submitit): at the time limit it is requeued and resumes."""

    def __call__(self, spec_path: str) -> dict[str, Any]:
        try:
            return run_cell(spec_path)
        except Interrupted:
            import submitit

            raise submitit.core.utils.UncompletedJobError("interrupted; requeue") from None

    def checkpoint(self, spec_path: str):
        """submitit calls this before the time limit: requeue the same cell; it resumes
        from its newest checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), spec_path)
