"""`fdae study STUDY.yaml | report STUDY.yaml | status STUDY.yaml`: run and tabulate studies."""

from __future__ import annotations

import argparse
import sys

from fdae.errors import FdaeError

ACTIONS = ("run", "report", "status")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="run methods x datasets x seeds (locally or on Slurm) and tabulate them",
        description="fdae study STUDY.yaml runs (or finishes) every cell of a study; "
                    "fdae study report STUDY.yaml writes its table (Markdown, CSV, LaTeX) and plot; "
                    "fdae study status STUDY.yaml says what is done. The study file's keys: "
                    "see fdae/study/spec.py or studies/cpu-small.yaml.")
    p.add_argument("action", help="STUDY.yaml (run it), or report / status followed by STUDY.yaml")
    p.add_argument("study", nargs="?", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="cells folder (default: the study's `out`, else runs/studies/NAME)")
    p.add_argument("--jobs", type=int, default=None, help="local runs at a time (default: launcher.jobs, "
                                                          "else one per GPU, else 1)")
    p.add_argument("--launcher", choices=("local", "slurm"), default=None, help="override launcher.kind")
    p.add_argument("--retry-failed", action="store_true", help="run failed cells again")
    p.add_argument("--report-dir", default=None, help="report: where to write (default: OUT/report)")
    p.add_argument("--reference", default=None, help="report: YAML of published rows, shown as quoted")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fdae.study.spec import load_study

    if args.action in ACTIONS:
        action, path = args.action, args.study
        if path is None:
            raise FdaeError(f"fdae study {action} needs the study file: fdae study {action} STUDY.yaml")
    else:
        if args.study is not None:
            raise FdaeError(f"unknown study action {args.action!r}; use fdae study STUDY.yaml, "
                            "fdae study report STUDY.yaml or fdae study status STUDY.yaml")
        action, path = "run", args.action
    study = load_study(path, out=args.out)
    if action == "status":
        from fdae.study.runner import status

        st = status(study)
        print(f"study {study.name} ({study.out}): " + st.line())
        for cell in st.failed:
            print(f"failed: {cell.key} (log: {study.cell_dir(cell) / 'log.txt'})")
        return 0
    if action == "report":
        from fdae.study.report import markdown, write_report

        out = write_report(study, args.report_dir, args.reference)
        print(markdown(out["report"]))
        print("wrote " + ", ".join(str(p) for p in out["files"].values()))
        return 0
    from fdae.study.runner import run_study

    final = run_study(study, jobs=args.jobs, retry_failed=args.retry_failed, launcher=args.launcher,
                      say=lambda msg: print(msg, flush=True))
    if final.todo or final.failed:
        print(f"not finished: {len(final.failed)} failed, {len(final.todo)} left; run the same command again "
              f"({'with --retry-failed ' if final.failed else ''}to finish)", file=sys.stderr)
        return 1
    print(f"done: fdae study report {path}")
    return 0
