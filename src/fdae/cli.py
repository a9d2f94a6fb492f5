"""The `fdae` command line: one dispatcher, one module per sub-command.

Each module in `fdae.commands` defines `register(subparsers)`, which adds its parser
and sets `func(args) -> int`. User errors (`FdaeError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from fdae.errors import FdaeError

COMMANDS = ("data", "train", "eval", "sample", "viz", "demo")


def python_module_command(module: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that run `python -m module args` in a child process on this
    very fdae: its source folder first on PYTHONPATH, and `-P` so that the working
    directory cannot shadow it."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return [sys.executable, "-P", "-m", module, *args], env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fdae",
        description="Disentangled representation learning with diffusion models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"fdae.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FdaeError as err:
        print(f"fdae: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fdae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
