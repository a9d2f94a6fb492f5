"""Folders of small generated images for the image-folder tests.

Each image: a light or dark background, a red/green/blue square or circle at a random
place. Sizes 32-80 px (some not square); PNG, JPEG and WebP; a few greyscale, a few
RGBA; some in subfolders. labels.csv: colour, background, shape (trivially visible)
and `random` (independent of the image). Greyscale images have no colour label (empty
cell).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 230)}
BACKGROUNDS = {"light": (225, 225, 215), "dark": (35, 35, 45)}
SHAPES = ("square", "circle")


def scene(rng: np.random.Generator, colour: str, background: str, shape: str) -> Image.Image:
    w = int(rng.integers(32, 81))
    h = w if rng.random() < 0.6 else int(rng.integers(32, 81))
    img = Image.new("RGB", (w, h), BACKGROUNDS[background])
    draw = ImageDraw.Draw(img)
    s = min(w, h)
    r = int(s * rng.uniform(0.2, 0.3))
    cx = int(rng.integers(w // 2 - s // 6, w // 2 + s // 6 + 1))
    cy = int(rng.integers(h // 2 - s // 6, h // 2 + s // 6 + 1))
    box = (cx - r, cy - r, cx + r, cy + r)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    return img


def make_folder(root: Path, n: int = 240, seed: int = 0, corrupt: int = 3, labels: bool = True,
                grid: bool = False) -> dict:
    """Write n images (+ `corrupt` bad files, a non-image file) under `root`.

    grid=True: labels.csv has only colour and shape (a full 3 x 2 grid). Returns the
    labels as {relative path: {attribute: value}}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    table: dict[str, dict] = {}
    for i in range(n):
        colour = list(COLOURS)[i % 3]
        shape = SHAPES[(i // 3) % 2]
        background = list(BACKGROUNDS)[int(rng.integers(2))]
        img = scene(rng, colour, background, shape)
        kind = i % 10
        grey = kind == 7
        if grey:
            img = img.convert("L")
        elif kind == 8:
            img = img.convert("RGBA")
        folder = "" if i % 4 else ("sub/" if i % 8 else "sub/deeper/")
        ext = ("png", "jpg", "webp", "png", "jpeg")[i % 5]
        if kind == 8:
            ext = "png"  # RGBA as PNG
        rel = f"{folder}img{i:04d}.{ext.upper() if i % 11 == 0 else ext}"
        fmt = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}[ext]
        img.save(root / rel, fmt, **({"quality": 92} if fmt in ("JPEG", "WEBP") else {}))
        table[rel] = {"colour": "" if grey else colour, "background": background, "shape": shape,
                      "random": int(rng.integers(3))}
    bad = [("broken.png", b"not a png at all"), ("sub/empty.webp", b""),
           ("truncated.jpg", None)]
    for name, data in bad[:corrupt]:
        if data is None:  # a real JPEG cut in half
            import io

            buf = io.BytesIO()
            scene(rng, "red", "light", "square").save(buf, "JPEG")
            data = buf.getvalue()[: len(buf.getvalue()) // 3]
        (root / name).write_bytes(data)
    (root / "notes.txt").write_text("not an image\n")
    if labels:
        cols = ["colour", "shape"] if grid else ["colour", "background", "shape", "random"]
        with open(root / "labels.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", *cols])
            for rel, lab in table.items():
                if grid and lab["colour"] == "":
                    continue
                # bare names for images at the top level, paths for the subfolders
                w.writerow([rel, *[lab[c] for c in cols]])
            w.writerow(["truncated.jpg", *["red" if c == "colour" else ("square" if c == "shape" else 0)
                                           for c in cols]][: len(cols) + 1])
    return table
