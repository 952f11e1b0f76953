"""Image folders -> file lists: which files are usable images, and (for labeled ImageFolder trees)
their labels in the teacher's class order. Only headers are read here; pixels are decoded later."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from .disk import atomic_write

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
ORIENTATION = 0x0112  # the EXIF tag
MAX_IMAGE_PIXELS = 100_000_000  # refuse decompression bombs from the header, before allocating


@dataclass
class FolderScan:
    """Usable image files of a folder tree, and the skipped ones by reason."""

    root: Path
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> str:
        reasons = ", ".join(f"{len(v)} {k}" for k, v in sorted(self.skipped.items()))
        return f"{self.root}: {len(self.files)} images" + (f"; skipped {reasons}" if reasons else "")


def _check_image(path: Path, size: int | None = None) -> str | None:
    """Why `path` is not a usable image (from its header, without decoding pixels), or None."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not_an_image_file"
    if not path.exists():
        return "dangling_symlink"
    try:
        if (path.stat().st_size if size is None else size) == 0:
            return "empty_file"
        with Image.open(path) as img:
            width, height = img.size
    except PermissionError:
        return "unreadable"
    except (UnidentifiedImageError, SyntaxError, ValueError):
        return "not_an_image"
    except Image.DecompressionBombError:
        return "decompression_bomb"
    except OSError:  # e.g. a JPEG cut off inside its header
        return "corrupt"
    if width * height > MAX_IMAGE_PIXELS:
        return "decompression_bomb"
    return None


def scan_images(root: str | Path, index_dir: str | Path | None = None) -> FolderScan:
    """Every image under `root`, recursively, in a stable order; class sub-folders are just folders.

    With `index_dir`, each file's verdict is kept there (`scan-<root hash>.json`, keyed by relative path,
    size and mtime), so a later scan of an unchanged folder only lists it and stats its files: no image
    header is opened again (100,000 files: BENCHMARKS.md)."""
    root = Path(root)
    scan = FolderScan(root)
    index_file = _index_file(root, index_dir) if index_dir else None
    old = _read_index(index_file) if index_file else {}
    new = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            _scan_file(Path(dirpath) / name, root, old, new, scan)
    if index_file and new != old:
        _write_index(index_file, root, new)
    return scan


def _scan_file(path: Path, root: Path, old: dict, new: dict, scan: FolderScan) -> None:
    """One file's verdict: the index's when its size and mtime are unchanged, else from its header."""
    try:
        stat = path.stat()
        key = [stat.st_size, stat.st_mtime_ns]
    except OSError:  # a dangling symlink, or gone since the listing
        key = None
    rel = os.path.relpath(path, root)
    if key is not None and old.get(rel, [None])[:2] == key:
        reason = old[rel][2]
    else:
        reason = _check_image(path, key[0] if key else None)
    if key is not None and reason != "unreadable":  # (permissions may be fixed: ask again)
        new[rel] = [*key, reason]
    if reason:
        scan.skipped[reason].append(str(path))
    else:
        scan.files.append(path)


def _index_file(root: Path, index_dir: str | Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(index_dir) / f"scan-{digest}.json"


def _read_index(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: scan from the headers
        return {}


def _write_index(path: Path, root: Path, files: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"root": str(root.resolve()), "files": files})))
    except OSError as err:  # an index is a speed-up: never a reason to stop
        log.warning("could not write the scan index %s (%s)", path, err)


def load_rgb(path: Path, working_size: Callable[[int, int], tuple[int, int] | None] | None = None) -> Image.Image:
    """Decode any PIL mode (L, P, RGBA, CMYK, I;16) to RGB, applying the EXIF orientation.

    `working_size(width, height)`, given the image's size (as oriented), may return the smallest size the
    caller needs; a JPEG is then decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (`Image.draft`) when
    that still covers it, which skips most of the decoding work of a multi-megapixel photo."""
    with Image.open(path) as img:
        if working_size is not None:
            turned = img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)  # EXIF rotations by 90 degrees
            width, height = img.size[::-1] if turned else img.size
            need = working_size(width, height)
            if need is not None and img.format in ("JPEG", "MPO"):
                img.draft("RGB", need[::-1] if turned else need)
        img = ImageOps.exif_transpose(img)
        if img.mode == "I;16" or img.mode == "I":
            img = img.point(lambda v: v / 256).convert("L")
        return img.convert("RGB")


def record_skipped(log_file: Path | None, reason: str, paths: Sequence[str]) -> None:
    """Append "reason<TAB>path" lines; small appends are atomic, so loader workers can share the file."""
    if log_file is None or not paths:
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as f:
        f.write("".join(f"{reason}\t{p}\n" for p in paths))


def report_skipped(skipped: dict[str, list[str]], key: str, log_file: Path | None) -> None:
    """Log each reason once (with a few examples) and list every skipped file in `log_file`."""
    for reason, paths in skipped.items():
        log.warning("%s: skipped %d files (%s), e.g. %s", key, len(paths), reason, ", ".join(paths[:3]))
        record_skipped(log_file, reason, paths)


def skipped_counts(log_file: Path | None) -> dict[str, int]:
    """Skipped files by reason, from the run's skipped_files.tsv."""
    counts: dict[str, int] = defaultdict(int)
    if log_file is not None and log_file.exists():
        for line in log_file.read_text().splitlines():
            counts[line.split("\t", 1)[0]] += 1
    return dict(counts)



def class_folders(root: str | Path, key: str = "data.train_dir") -> list[str]:
    """Sorted sub-folder names of an ImageFolder-layout tree: its class names."""
    root = existing_dir(str(root), key)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"{root} has no class sub-folders: a labeled folder needs ImageFolder layout (root/class/img)")
    return folders


def labeled_files(root: str | Path, class_names: Sequence[str] | None, key: str,
                  num_classes: int | None = None, skipped_log: Path | None = None, scan_index: str | None = None
                  ) -> tuple[list[Path], list[int], list[str]]:
    """An ImageFolder-layout tree -> files, label indices in the teacher's class order, folder names.

    With `class_names` (the teacher's), each folder name must be one of them; without, folders map to
    outputs in sorted order. Unusable files are left out, logged, and listed in `skipped_log`."""
    root = Path(root)
    folders = class_folders(root, key)
    if class_names is not None:
        unknown = [f for f in folders if f not in class_names]
        if unknown:
            raise ValueError(f"{key}={root}: class folders {unknown[:5]} are not among the teacher's {len(class_names)} "
                             f"classes (e.g. {list(class_names)[:5]}); fix the folder names or the teacher's class list")
        index = {name: i for i, name in enumerate(class_names)}
    else:
        if num_classes is not None and len(folders) > num_classes:
            raise ValueError(f"{key}={root} has {len(folders)} class folders but the teacher has {num_classes} "
                             f"outputs; give the teacher a class list (classes.txt beside its checkpoint)")
        log.warning("the teacher has no class names: %s's folders map to its outputs in sorted order", key)
        index = {name: i for i, name in enumerate(folders)}
    files, labels, skipped = [], [], defaultdict(list)
    for folder in folders:
        scan = scan_images(root / folder, scan_index)
        files += scan.files
        labels += [index[folder]] * len(scan.files)
        for reason, paths in scan.skipped.items():
            skipped[reason] += paths
    report_skipped(skipped, key, skipped_log)
    return files, labels, folders


def label_subset(files: Sequence[Path], labels: Sequence[int], fraction: float) -> tuple[list[Path], list[int]]:
    """The same `fraction` of every class, drawn with a fixed seed (the label-budget case).

    A pure function of the file list (not of the run's seed), so a recipe's teacher stage and its label-only
    baselines see the same labeled images."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data.label_fraction={fraction} must be in (0, 1]")
    if fraction == 1:
        return list(files), list(labels)
    by_class: dict[int, list[Path]] = defaultdict(list)
    for f, label in zip(files, labels):
        by_class[label].append(f)
    keep = []
    for label, group in by_class.items():
        chosen = random.Random(f"label-subset-{label}").sample(range(len(group)), max(1, round(fraction * len(group))))
        keep += [(group[i], label) for i in sorted(chosen)]
    return [f for f, _ in keep], [label for _, label in keep]



def existing_dir(path: str, key: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{key}={path} is not a directory")
    return p
