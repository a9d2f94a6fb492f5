"""`fdae methods`: every method fdae trains, its config fields with their defaults, the
figures `fdae viz` draws for it, and (for the VAE baselines) disentanglement_lib's sweep."""

from __future__ import annotations

import argparse
import dataclasses


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list the methods, their config fields and defaults")
    p.add_argument("name", nargs="?", default=None, help="one method (default: all)")
    p.set_defaults(func=run)


def describe(name: str) -> list[str]:
    from fdae.config import method_class

    cls = method_class(name)
    cfg = cls.Config()
    sections = ", ".join(["name", "seed", "data", "method", *cls.Config.SECTIONS, "optim", "train", "eval"])
    doc = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    lines = [f"{name}: {doc}", f"  sections: {sections}", f"  figures:  {', '.join(cls.figures)}"]
    for f in dataclasses.fields(cfg):
        if f.name != "name":
            lines.append(f"  method.{f.name} = {getattr(cfg, f.name)!r}")
    sweep = getattr(cls.Config, "SWEEP", None)
    if sweep and sweep[0]:
        lines.append(f"  disentanglement_lib's sweep: method.{sweep[0]} in "
                     f"{{{', '.join(f'{v:g}' for v in sweep[1])}}}")
    return lines


def run(args: argparse.Namespace) -> int:
    from fdae.config import METHODS, method_class

    names = [args.name] if args.name else list(METHODS)
    for name in names:
        method_class(name)  # an unknown name: one clear error
        print("\n".join(describe(name)) + "\n")
    return 0
