"""Image folders -> batches of crops for teacher and student.

One crop per image feeds both models: the crop box (and flip) is drawn once, then resized to the
teacher's and to the student's resolution. Batches are uint8; each model normalises with its own
mean/std on the device, which keeps worker->main-process traffic 4x smaller than float tensors.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.utilities import rank_zero_only
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from tqdm.auto import tqdm

from .disk import cache_path, write_json

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
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


def _check_image(path: Path) -> str | None:
    """Why `path` is not a usable image (from its header, without decoding pixels), or None."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not_an_image_file"
    if not path.exists():
        return "dangling_symlink"
    try:
        if path.stat().st_size == 0:
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


def scan_images(root: str | Path) -> FolderScan:
    """Every image under `root`, recursively, in a stable order; class sub-folders are just folders."""
    scan = FolderScan(Path(root))
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            reason = _check_image(path)
            if reason:
                scan.skipped[reason].append(str(path))
            else:
                scan.files.append(path)
    return scan


def load_rgb(path: Path) -> Image.Image:
    """Decode any PIL mode (L, P, RGBA, CMYK, I;16) to RGB, applying the EXIF orientation."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode == "I;16" or img.mode == "I":
            img = img.point(lambda v: v / 256).convert("L")
        return img.convert("RGB")


class CropViews:
    """Draw one crop box per image (random-resized + flip in training, centred otherwise) and resize it
    to every requested view size, e.g. {"teacher": 224, "student": 128}."""

    def __init__(self, sizes: dict[str, int], train: bool, scale: Sequence[float] = (0.35, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: bool = True, crop_pct: float = 1.0):
        self.sizes, self.train, self.scale, self.ratio = sizes, train, tuple(scale), tuple(ratio)
        self.hflip, self.crop_pct = hflip, crop_pct

    def box(self, width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop."""
        if not self.train:
            side = max(1, round(self.crop_pct * min(width, height)))
            return (height - side) // 2, (width - side) // 2, side, side
        area = width * height
        for _ in range(10):  # torchvision's RandomResizedCrop rule
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        side = min(width, height)
        return (height - side) // 2, (width - side) // 2, side, side

    def __call__(self, img: Image.Image | torch.Tensor, rng: random.Random | None = None) -> dict[str, torch.Tensor]:
        rng = rng or random.Random()
        pixels = img if isinstance(img, torch.Tensor) else TF.pil_to_tensor(img)  # 3,H,W uint8
        top, left, h, w = self.box(pixels.shape[-1], pixels.shape[-2], rng)
        flip = self.train and self.hflip and rng.random() < 0.5
        views, by_size = {}, {}
        for name, size in self.sizes.items():
            if size not in by_size:
                view = TF.resized_crop(pixels, top, left, h, w, [size, size], antialias=True)
                by_size[size] = TF.horizontal_flip(view) if flip else view
            views[name] = by_size[size]
        return views


def record_skipped(log_file: Path | None, reason: str, paths: Sequence[str]) -> None:
    """Append "reason<TAB>path" lines; small appends are atomic, so loader workers can share the file."""
    if log_file is None or not paths:
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as f:
        f.write("".join(f"{reason}\t{p}\n" for p in paths))


def skipped_counts(log_file: Path | None) -> dict[str, int]:
    """Skipped files by reason, from the run's skipped_files.tsv."""
    counts: dict[str, int] = defaultdict(int)
    if log_file is not None and log_file.exists():
        for line in log_file.read_text().splitlines():
            counts[line.split("\t", 1)[0]] += 1
    return dict(counts)


class NpyRows:
    """Rows of a .npy file on disk, read with pread: `read(i, j)` returns array[i, j] for index arrays i, j
    (the leading axes). Unlike a memory map, the pages read stay in the page cache and out of this process's
    RSS (a map's touched pages counted there: 1.6 GB of a 2.9 GB peak in a 128 px Imagenette run), so memory
    stays flat however large the cache."""

    def __init__(self, path: str):
        header = np.load(path, mmap_mode="r")  # numpy parses the header; no page is touched
        if not header.flags.c_contiguous:
            raise ValueError(f"{path}: a Fortran-ordered array")
        self.shape, self.dtype, self.offset = header.shape, header.dtype, header.offset
        self.path, self._fd, self._pid = path, None, None

    def read(self, *index) -> np.ndarray:
        lead, row_shape = self.shape[:len(index)], self.shape[len(index):]
        rows = np.ravel_multi_index(tuple(np.asarray(i) for i in index), lead)
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        out = np.empty((len(rows), *row_shape), self.dtype)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        for k, r in enumerate(rows.tolist()):
            n = os.preadv(self._fd, [buf[k * row_bytes:(k + 1) * row_bytes]], self.offset + r * row_bytes)
            if n != row_bytes:
                raise OSError(f"{self.path}: short read at row {r} ({n} of {row_bytes} bytes)")
        return out

    def __getstate__(self) -> dict:  # descriptors do not travel to spawned workers
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


class ImageFiles(Dataset):
    """Files (with labels, or -1 for unlabeled) -> {view name: uint8 3xSxS, "label": int}.

    Pixel data is decoded lazily: a file whose header passed the scan but whose data is truncated or
    corrupt is recorded in `skipped_log` and replaced by the next image, so a run never dies on it."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int] | None, transform: CropViews,
                 skipped_log: Path | None = None, soft_targets: dict | None = None, decoded: str | None = None):
        self.files, self.transform, self.skipped_log = list(files), transform, skipped_log
        # Optional decoded-image cache (see `decode_to_cache`): N x H x W x 3 uint8 on disk, memory-mapped.
        self.decoded, self._pixels = decoded, None
        # Optional pre-rendered views (see `render_views`): K x N x S x S x 3 uint8, the crops themselves.
        self.rendered, self._rendered = None, None
        self.labels = list(labels) if labels is not None else [-1] * len(self.files)
        self.bad: set[int] = set()  # per worker process
        # Cached teacher logits ({"path", "views"}, see distill.cache): epoch e uses view e mod K.
        self.soft_targets, self._logits = soft_targets, None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        # (index, seed, epoch) from EpochSampler: the crop depends on nothing else, so runs are
        # reproducible whatever the worker count, and a resumed run sees the same crops.
        index, seed, epoch = key if isinstance(key, tuple) else (key, 0, 0)
        view = epoch % self.soft_targets["views"] if self.soft_targets else epoch
        rng = random.Random(f"{seed}-{view}-{index}")
        for offset in range(len(self.files)):
            i = (index + offset) % len(self.files)
            if i in self.bad:
                continue
            if self.rendered:
                (name,) = self.transform.sizes
                crop = self._rows("_rendered", self.rendered).read([view], [index])[0]
                crop = torch.from_numpy(crop).permute(2, 0, 1)
                return self._sample(crop, rng, index, i, view, rendered=name)
            if self.decoded:
                img = torch.from_numpy(self._rows("_pixels", self.decoded).read([i])[0]).permute(2, 0, 1)  # 3,H,W
                return self._sample(img, rng, index, i, view)
            try:
                img = load_rgb(self.files[i])
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # corrupt pixel data
                self.bad.add(i)
                log.warning("skipping undecodable image %s (%s)", self.files[i], err)
                record_skipped(self.skipped_log, "undecodable", [str(self.files[i])])
                continue
            return self._sample(img, rng, index, i, view)
        raise RuntimeError("no image in this dataset can be decoded")

    def _rows(self, attr: str, path: str) -> "NpyRows":
        """An array file opened on first use in each process (workers get the dataset before it is opened)."""
        if getattr(self, attr) is None:
            setattr(self, attr, NpyRows(path))
        return getattr(self, attr)

    def __getitems__(self, keys: list) -> dict | list[dict]:
        """A whole batch. From pre-rendered views it is read straight into one B x S x S x 3 array
        (channels-last as it lands); otherwise one sample at a time."""
        if not self.rendered or self.bad:  # (a bad image's stand-in needs the per-sample path's label)
            return [self[k] for k in keys]
        index = np.array([k[0] for k in keys])
        view = np.array([k[2] for k in keys]) % self.soft_targets["views"]
        (name,) = self.transform.sizes
        batch = {name: torch.from_numpy(self._rows("_rendered", self.rendered).read(view, index)).permute(0, 3, 1, 2),
                 "label": torch.tensor([self.labels[i] for i in index]), "index": torch.from_numpy(index),
                 "view": torch.from_numpy(view)}
        logits = self._rows("_logits", self.soft_targets["path"]).read(view, index)
        batch["teacher_logits"] = torch.from_numpy(logits.astype(np.float32))
        return batch

    def _sample(self, img, rng: random.Random, index: int, i: int, view: int, rendered: str | None = None) -> dict:
        views = {rendered: img} if rendered else self.transform(img, rng)
        sample = {**views, "label": self.labels[i], "index": index, "view": view}
        if self.soft_targets:
            logits = self._rows("_logits", self.soft_targets["path"]).read([view], [index])[0]
            sample["teacher_logits"] = torch.from_numpy(logits.astype(np.float32))
        return sample


def decode_to_cache(files: Sequence[Path], root: Path, max_bytes: float = 4e9) -> tuple[str | None, list[int]]:
    """Decode every image once into `root/decoded-<hash of the file list>.npy` (N x H x W x 3 uint8), so
    JPEG/PNG decoding is paid once, not every epoch. Only for folders whose images all have one size
    (CIFAR-like) and fit in `max_bytes`; returns (None, []) otherwise. The image sizes are read from the
    headers once and kept beside the would-be file. Also returns the indices that failed to decode."""
    path = cache_path(root, "decoded", files, suffix=".npy")
    bad_file, sizes_file = path.with_suffix(".bad.json"), path.with_suffix(".sizes.json")
    if path.exists():
        return str(path), json.loads(bad_file.read_text()) if bad_file.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    if not sizes_file.exists():  # headers only: ~50 us an image
        sizes = Counter(filter(None, map(_header_size, files)))
        write_json(sizes_file, {"distinct": len(sizes), "common": sizes.most_common(3)})
    sizes = json.loads(sizes_file.read_text())
    if sizes["distinct"] != 1:
        log.info("data.decoded_cache: decoding on the fly (images of %d sizes, e.g. %s)", sizes["distinct"],
                 [tuple(wh) for wh, _ in sizes["common"]])
        return None, []
    (width, height), _ = sizes["common"][0]
    if (nbytes := len(files) * width * height * 3) > max_bytes:
        log.info("data.decoded_cache: decoding on the fly (%.1f GB decoded > data.decoded_max_gb)", nbytes / 1e9)
        return None, []
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), height, width, 3))
    bad = []
    for i, f in enumerate(tqdm(files, desc="decoding images once", unit="img", mininterval=2)):
        try:
            img = load_rgb(f)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            bad.append(i)
            continue
        if img.size != (width, height):  # an EXIF rotation that the header did not show
            del pixels
            tmp.unlink()
            log.info("data.decoded_cache: decoding on the fly (%s is %s after its EXIF rotation)", f, img.size)
            write_json(sizes_file, {"distinct": 2, "common": [[[width, height], 1], [img.size, 1]]})
            return None, []
        pixels[i] = np.asarray(img)
    pixels.flush()
    del pixels
    bad_file.write_text(json.dumps(bad))
    os.replace(tmp, path)
    return str(path), bad


def _header_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None  # (the scan passed it; decoding will record it as bad)


class _Views(Sampler):
    """(index, seed, view) for views 0..K-1 of every image, view-major: the row order of `render_views`."""

    def __init__(self, size: int, views: int, seed: int):
        self.size, self.views, self.seed = size, views, seed

    def __len__(self) -> int:
        return self.size * self.views

    def __iter__(self):
        return ((i, self.seed, k) for k in range(self.views) for i in range(self.size))


def render_views(dataset: ImageFiles, views: int, seed: int, root: Path, batch_size: int = 256,
                 num_workers: int = 0) -> str:
    """Render views 0..K-1 of every image of `dataset` (one view size) once, into
    `root/views-<key>.npy` (K x N x S x S x 3 uint8), and return its path.

    With cached soft targets the student's crops repeat every K epochs; cropping and resizing them again
    each epoch costs training speed on a machine whose cores also run the step (measured in
    benchmarks/throughput.py). The key covers the file list, the crop policy, the seed and K."""
    t = dataset.transform
    ((name, size),) = t.sizes.items()
    policy = json.dumps({"size": size, "train": t.train, "scale": list(t.scale), "ratio": list(t.ratio),
                         "hflip": t.hflip, "crop_pct": t.crop_pct, "seed": seed, "views": views,
                         "bad": sorted(dataset.bad)}, sort_keys=True)
    path = cache_path(root, "views", dataset.files, hashlib.sha256(policy.encode()), suffix=".npy")
    if path.exists():
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(views, len(dataset), size, size, 3))
    offset = header.offset
    del header
    loader = DataLoader(dataset, batch_size=batch_size, sampler=_Views(len(dataset), views, seed),
                        num_workers=num_workers)
    with tmp.open("r+b") as f:  # rows arrive in file order: plain sequential writes, nothing mapped
        f.seek(offset)
        for batch in tqdm(loader, desc=f"rendering {views} views at {size} px", unit="batch", mininterval=2):
            f.write(batch[name].permute(0, 2, 3, 1).contiguous().numpy().tobytes())
    os.replace(tmp, path)
    return str(path)


def class_folders(root: str | Path, key: str = "data.train_dir") -> list[str]:
    """Sorted sub-folder names of an ImageFolder-layout tree: its class names."""
    root = _existing_dir(str(root), key)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"{root} has no class sub-folders: a labeled folder needs ImageFolder layout (root/class/img)")
    return folders


def labeled_files(root: str | Path, class_names: Sequence[str] | None, key: str,
                  num_classes: int | None = None) -> tuple[list[Path], list[int], list[str]]:
    """An ImageFolder-layout tree -> files, label indices in the teacher's class order, folder names.

    With `class_names` (the teacher's), each folder name must be one of them; without, folders map to
    outputs in sorted order."""
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
    files, labels = [], []
    for folder in folders:
        scan = scan_images(root / folder)
        files += scan.files
        labels += [index[folder]] * len(scan.files)
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


class EpochSampler(Sampler):
    """Shuffles by (seed, epoch) and yields (index, seed, epoch), so each sample's augmentation is a pure
    function of those three numbers. Lightning calls `set_epoch` at every epoch.

    Under DDP (Lightning's `use_distributed_sampler=False`, see conf/trainer/ddp.yaml) rank r of w takes
    positions r, r+w, ... of the shared order, so w ranks with batch b see exactly the samples of one
    process with batch w*b. Training shards are padded to equal length (ranks must take the same number
    of steps); evaluation shards are not, so metrics count every image exactly once."""

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _positions(self) -> range:
        rank, world = self._rank_world()
        total = math.ceil(self.size / world) * world if self.shuffle else self.size
        return range(rank, total, world)

    def __len__(self) -> int:
        return len(self._positions())

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)) \
            if self.shuffle else torch.arange(self.size)
        return iter([(int(order[p % self.size]), self.seed, self.epoch) for p in self._positions()])


def _collate(batch: dict | list[dict]) -> dict:
    return batch if isinstance(batch, dict) else default_collate(batch)  # dict: batched by __getitems__


def default_num_workers() -> int:
    # Workers share the cores with the training step: one decoder per two cores leaves the rest to compute.
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class DistillDataModule(pl.LightningDataModule):
    """Unlabeled (or labeled) training images and an optional labeled validation folder.

    Args:
        image_sizes: view name -> resolution, e.g. {"teacher": 224, "student": 128} (set by train.py).
        unlabeled_dir: any folder tree of images; labels are never read from it.
        train_dir: a labeled ImageFolder tree; used instead of `unlabeled_dir` when given (teacher
            training, or the hard-label term / label-only baseline).
        label_fraction: use only this fraction of each class of `train_dir` (the label-budget case).
        val_dir: a labeled ImageFolder tree for accuracy; folder names must be the teacher's classes.
        class_names: the teacher's classes, in output order (None: folders map by sorted order).
        num_classes: the teacher's output count, to check folders against when it has no class names.
        batch_size, num_workers (None: one per two cores), train_scale (random-resized-crop area range),
        hflip, eval_crop_pct: the usual.
        skipped_log: where every skipped file is listed with its reason (skipped_files.tsv in the run dir).
        seed: shuffling and augmentation seed (see `EpochSampler`).
        decoded_cache: a folder for decoded uint8 copies of equal-size images (`decode_to_cache`), so
            JPEG decoding is paid once, up to `decoded_max_gb` on disk; None decodes every epoch. With
            cached soft targets the student's K training views are rendered there too (`render_views`),
            up to `rendered_max_gb`.
    """

    def __init__(self, image_sizes: dict[str, int], unlabeled_dir: str | None = None, train_dir: str | None = None,
                 val_dir: str | None = None, label_fraction: float = 1.0, class_names: Sequence[str] | None = None,
                 num_classes: int | None = None, batch_size: int = 64,
                 num_workers: int | None = None, train_scale: Sequence[float] = (0.35, 1.0), hflip: bool = True,
                 eval_crop_pct: float = 1.0, pin_memory: bool = False, skipped_log: str | None = None,
                 seed: int = 0, decoded_cache: str | None = None, decoded_max_gb: float = 4.0,
                 rendered_max_gb: float = 4.0):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be a positive integer")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"data.num_workers={num_workers} must be >= 0 (or null for the default)")
        self.image_sizes = dict(image_sizes)
        self.unlabeled_dir, self.train_dir, self.val_dir = unlabeled_dir, train_dir, val_dir
        self.label_fraction = label_fraction
        self.class_names = list(class_names) if class_names is not None else None
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.workers_auto = num_workers is None
        self.train_scale, self.hflip, self.eval_crop_pct, self.pin_memory = train_scale, hflip, eval_crop_pct, pin_memory
        self.skipped_log = Path(skipped_log) if skipped_log and rank_zero_only.rank == 0 else None
        self.seed, self.decoded_cache = seed, decoded_cache
        self.decoded_max_gb, self.rendered_max_gb = decoded_max_gb, rendered_max_gb
        if self.skipped_log is not None and self.skipped_log.exists():
            self.skipped_log.unlink()  # a resumed run re-scans; don't count its files twice
        self.train_set, self.val_set = self._build_sets()

    def _build_sets(self) -> tuple[ImageFiles, ImageFiles | None]:
        # Built (and checked) at construction so a bad folder fails before any model work starts.
        train_views = CropViews(self.image_sizes, train=True, scale=self.train_scale, hflip=self.hflip)
        if self.train_dir:
            files, labels, _ = labeled_files(self.train_dir, self.class_names, "data.train_dir", self.num_classes)
            files, labels = label_subset(files, labels, self.label_fraction)
            source = self.train_dir
        elif self.unlabeled_dir:
            scan = scan_images(_existing_dir(self.unlabeled_dir, "data.unlabeled_dir"))
            log.info("unlabeled %s", scan.summary())
            for reason, paths in scan.skipped.items():
                log.warning("skipped %d files (%s), e.g. %s", len(paths), reason, ", ".join(paths[:3]))
                record_skipped(self.skipped_log, reason, paths)
            files, labels, source = scan.files, None, self.unlabeled_dir
        else:
            raise ValueError("no training images: set data.unlabeled_dir (or data.train_dir for labeled images)")
        if not files:
            raise ValueError(f"no usable images under {source}")
        train_set = self._with_decoded(ImageFiles(files, labels, train_views, self.skipped_log))
        val_set = None
        if self.val_dir:
            files, labels, _ = labeled_files(self.val_dir, self.class_names, "data.val_dir", self.num_classes)
            if not files:
                raise ValueError(f"no usable images under data.val_dir={self.val_dir}")
            val_set = self._with_decoded(ImageFiles(
                files, labels, CropViews(self.image_sizes, train=False, crop_pct=self.eval_crop_pct), self.skipped_log))
        return train_set, val_set

    def _with_decoded(self, dataset: ImageFiles) -> ImageFiles:
        if self.decoded_cache:
            dataset.decoded, bad = decode_to_cache(dataset.files, Path(self.decoded_cache), self.decoded_max_gb * 1e9)
            dataset.bad.update(bad)
            record_skipped(self.skipped_log, "undecodable", [str(dataset.files[i]) for i in bad])
        return dataset

    def _like(self, dataset: ImageFiles, views: CropViews, soft_targets: dict | None = None) -> ImageFiles:
        """The same images (and decoded cache) as `dataset`, with other views."""
        twin = ImageFiles(dataset.files, dataset.labels, views, self.skipped_log, soft_targets, dataset.decoded)
        twin.bad = set(dataset.bad)
        return twin

    def teacher_set(self, split: str) -> tuple[ImageFiles, dict]:
        """The split's images with the teacher's view only, and the view policy that defines its crops
        (what the soft-target cache is computed over, and keyed by)."""
        dataset = self.train_set if split == "train" else self.val_set
        train = split == "train"
        views = CropViews({"teacher": self.image_sizes["teacher"]}, train=train, scale=self.train_scale,
                          hflip=self.hflip, crop_pct=self.eval_crop_pct)
        policy = dict(split=split, size=self.image_sizes["teacher"], seed=self.seed,
                      **({"scale": list(self.train_scale), "hflip": self.hflip} if train
                         else {"crop_pct": self.eval_crop_pct}))
        return self._like(dataset, views), policy

    def student_view_only(self, split: str, soft_targets: dict | None = None) -> None:
        """Serve the split with the student's view only: with cached teacher logits, or (label-only
        training) with none, so the teacher's crop is never decoded and resized."""
        dataset = self.train_set if split == "train" else self.val_set
        student = {"student": self.image_sizes["student"]}
        views = CropViews(student, train=split == "train", scale=self.train_scale, hflip=self.hflip,
                          crop_pct=self.eval_crop_pct)
        cached = self._like(dataset, views, soft_targets)
        if split == "train" and soft_targets and cached.decoded:
            size = soft_targets["views"] * len(cached) * 3 * self.image_sizes["student"] ** 2
            if size <= self.rendered_max_gb * 1e9:
                cached.rendered = render_views(self._like(dataset, views), soft_targets["views"], self.seed,
                                               Path(self.decoded_cache), 4 * self.batch_size, self.num_workers)
            else:
                log.info("not rendering the student's views: %.1f GB > data.rendered_max_gb", size / 1e9)
        if split == "train":
            self.train_set = cached
        else:
            self.val_set = cached

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        sampler = EpochSampler(len(dataset), self.seed, shuffle)
        # Rendered views take a millisecond a batch: a worker process would cost more (it competes with
        # the step for the cores) than it saves, so the default loads them in the main process.
        workers = 0 if dataset.rendered and self.workers_auto else self.num_workers
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=self.pin_memory, persistent_workers=workers > 0, collate_fn=_collate,
                          drop_last=shuffle and len(dataset) > self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []


def _existing_dir(path: str, key: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{key}={path} is not a directory")
    return p
