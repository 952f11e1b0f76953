"""The embedded demo: a generated "shapes" image folder and a teacher trained on it by this project's code.

Both are built on first use in `paths.demo_dir` and reused by later runs, so `python train.py` works
offline on a fresh machine. Only what the run's config points at is built. The teacher is trained like
any other, by `train_teacher.py experiment=demo_teacher`, run as a recipe's teacher stage.
"""
from __future__ import annotations

import logging
import math
import random
import shutil
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFilter

from .stage import ensure_teacher

log = logging.getLogger(__name__)

CLASSES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bars")
IMG_SIZE = 32


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, inner: float = 1.0) -> list[tuple[float, float]]:
    points = []
    for k in range(n * (2 if inner != 1.0 else 1)):
        radius = r if k % 2 == 0 or inner == 1.0 else r * inner
        angle = rot + 2 * math.pi * k / (n * (2 if inner != 1.0 else 1))
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def draw_shape(label: str, rng: random.Random, size: int = IMG_SIZE) -> Image.Image:
    """One noisy image of `label`: random colours, position, scale, rotation, clutter and blur."""
    s = 4 * size  # draw at 4x and downsample, for anti-aliased edges
    bg = tuple(rng.randrange(256) for _ in range(3))
    fg = tuple((c + rng.randrange(80, 176)) % 256 for c in bg)  # always some contrast with the background
    img = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(img)
    for _ in range(rng.randrange(0, 3)):  # clutter lines
        d.line([(rng.uniform(0, s), rng.uniform(0, s)), (rng.uniform(0, s), rng.uniform(0, s))],
               fill=tuple(rng.randrange(256) for _ in range(3)), width=rng.randrange(1, 6))
    r = rng.uniform(0.28, 0.45) * s
    cx, cy = rng.uniform(r, s - r), rng.uniform(r, s - r)
    rot = rng.uniform(0, 2 * math.pi)
    w = max(3, int(r * rng.uniform(0.25, 0.4)))
    if label == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif label == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=w)
    elif label == "square":
        d.polygon(_polygon(cx, cy, r, 4, rot), fill=fg)
    elif label == "diamond":
        d.polygon([(cx, cy - r), (cx + 0.6 * r, cy), (cx, cy + r), (cx - 0.6 * r, cy)], fill=fg)
    elif label == "triangle":
        d.polygon(_polygon(cx, cy, r, 3, rot), fill=fg)
    elif label == "star":
        d.polygon(_polygon(cx, cy, r, 5, rot, inner=0.45), fill=fg)
    elif label == "cross":
        for a in (rot, rot + math.pi / 2):
            d.line([(cx - r * math.cos(a), cy - r * math.sin(a)), (cx + r * math.cos(a), cy + r * math.sin(a))],
                   fill=fg, width=w)
    elif label == "bars":
        for k in (-1, 0, 1):
            dx, dy = k * 0.6 * r * math.cos(rot + math.pi / 2), k * 0.6 * r * math.sin(rot + math.pi / 2)
            d.line([(cx + dx - r * math.cos(rot), cy + dy - r * math.sin(rot)),
                    (cx + dx + r * math.cos(rot), cy + dy + r * math.sin(rot))], fill=fg, width=max(2, w // 2))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    return img.resize((size, size), Image.BILINEAR)


def make_shapes(root: str | Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write root/{train,val}/<class>/NNNN.png; a `.complete` marker makes a half-written folder rebuild."""
    root = Path(root)
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    per_class = per_class or {"train": 300, "val": 60}
    for split, count in per_class.items():
        rng = random.Random(f"{seed}-{split}")
        for label in CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw_shape(label, rng).save(folder / f"{i:04d}.png")
    (root / ".complete").touch()
    log.info("demo data: %s (%s per class)", root, per_class)
    return root


def prepare(root: str, wanted: Sequence[str | None], teacher_name: str = "resnet18", teacher_epochs: int = 10,
            seed: int = 0) -> None:
    """Build the demo folder and/or demo teacher if the run reads any path inside `root` that is missing."""
    root = Path(root).expanduser().resolve()
    wanted_paths = [Path(p).expanduser().resolve() for p in wanted if p]
    inside = [p for p in wanted_paths if p.is_relative_to(root)]
    if not inside or all(p.exists() for p in inside):
        return
    make_shapes(root / "shapes")
    teacher_file = root / "teacher" / "teacher.safetensors"
    if teacher_file in inside and not teacher_file.exists():
        log.info("training the demo teacher (%s, %d epochs); cached for later runs in %s", teacher_name,
                 teacher_epochs, teacher_file.parent)
        ensure_teacher(str(teacher_file), ["experiment=demo_teacher", f"paths.demo_dir={root}",
                                           f"teacher.name={teacher_name}", f"trainer.max_epochs={teacher_epochs}",
                                           f"seed={seed}"])
