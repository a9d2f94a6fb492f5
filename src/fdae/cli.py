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

COMMANDS = ("data", "methods", "train", "eval", "sample", "viz", "navigate", "demo", "study")


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


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parse_args`, except that `key=value` overrides may stand anywhere on the line
    (before, between or after options) for commands that take overrides: argparse's
    `nargs="*"` positional takes only the first run of them, so the rest arrive as
    unrecognised arguments and are appended here in command-line order."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides"):
        stray = [a for a in extra if a.startswith("-") or "=" not in a]
        if not stray:
            args.overrides = [*(args.overrides or []), *extra]
            return args
        extra = stray
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.command not in ("data", "methods"):  # the commands that train or run models
        from fdae.threads import fit_threads_to_load

        note = fit_threads_to_load()
        if note:
            print(f"fdae: {note}", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except FdaeError as err:
        print(f"fdae: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a write or read the command did not anticipate: still one line
        from fdae.errors import describe_os_error

        print(f"fdae: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fdae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
