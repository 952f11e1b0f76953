"""Pixels paid for once: decoded images and rendered crops as uint8 .npy arrays on disk, and `NpyRows`
to read rows of them back without mapping them into memory."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .disk import cache_path, npy_damage, reserved_npy, write_json
from .folders import load_rgb
from .runtime import loader_worker_init

log = logging.getLogger(__name__)


class _PreadFile:
    """A file read with pread through a descriptor opened once per process: a forked DataLoader worker
    opens its own, and descriptors do not travel to spawned workers."""

    def __init__(self, path: str):
        self.path, self._fd, self._pid = path, None, None

    def _read_into(self, buf: memoryview, offset: int) -> None:
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        if (n := os.preadv(self._fd, [buf], offset)) != len(buf):
            raise OSError(f"{self.path}: short read at byte {offset} ({n} of {len(buf)} bytes)")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


class NpyRows(_PreadFile):
    """Rows of a .npy file on disk, read with pread: `read(i, j)` returns array[i, j] for index arrays i, j
    (the leading axes). Unlike a memory map, the pages read stay in the page cache and out of this process's
    RSS (a map's touched pages counted there: 1.6 GB of a 2.9 GB peak in a 128 px Imagenette run), so memory
    stays flat however large the cache."""

    def __init__(self, path: str):
        super().__init__(path)
        header = np.load(path, mmap_mode="r")  # numpy parses the header; no page is touched
        if not header.flags.c_contiguous:
            raise ValueError(f"{path}: a Fortran-ordered array")
        self.shape, self.dtype, self.offset = header.shape, header.dtype, header.offset

    def read(self, *index) -> np.ndarray:
        lead, row_shape = self.shape[:len(index)], self.shape[len(index):]
        rows = np.ravel_multi_index(tuple(np.asarray(i) for i in index), lead)
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        out = np.empty((len(rows), *row_shape), self.dtype)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        for k, r in enumerate(rows.tolist()):
            self._read_into(buf[k * row_bytes:(k + 1) * row_bytes], self.offset + r * row_bytes)
        return out


class RaggedPixels(_PreadFile):
    """Decoded images of many sizes in one flat uint8 file (`decode_to_cache` at a working short side),
    read one at a time with pread like `NpyRows`; `read(i)` returns (H x W x 3 pixels, the source's
    (width, height)), so crops drawn on the source's pixel grid can be scaled onto the stored image."""

    def __init__(self, path: str):
        super().__init__(path)
        self.index = np.load(f"{path}.index.npy")  # N x 5: offset, height, width, source w, h

    def read(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        offset, height, width, source_w, source_h = (int(v) for v in self.index[i])
        out = np.empty((height, width, 3), np.uint8)
        self._read_into(memoryview(out.reshape(-1)), offset)
        return out, (source_w, source_h)


def decode_to_cache(files: Sequence[Path], root: Path, max_bytes: float = 4e9,
                    short_side: int | None = None) -> tuple[str | None, list[int]]:
    """Decode every image once, so JPEG/PNG decoding is paid once, not every epoch; returns the cache's
    path (None: decode on the fly) and the indices that failed to decode.

    Images of one size no larger than needed: `root/decoded-<hash of the file list>.npy`, N x H x W x 3.
    Otherwise, given `short_side` (the working resolution: the short side at which every crop still
    covers the largest view), each image is stored once with its short side reduced to it (never
    enlarged), JPEGs decoded in the DCT domain at the nearest larger scale: `...-<hash>.bin`, read by
    `RaggedPixels`. Either way only when it fits in `max_bytes`. Header sizes are read once and kept
    beside the would-be file."""
    path = cache_path(root, "decoded", files, suffix=".npy")
    bad_file, sizes_file = path.with_suffix(".bad.json"), path.with_suffix(".sizes.json")
    if path.exists():
        if (why := npy_damage(path, dtype=np.uint8, rows=len(files))) is None:
            return str(path), json.loads(bad_file.read_text()) if bad_file.exists() else []
        log.warning("decoded-image cache %s is damaged (%s): decoding again", path, why)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = json.loads(sizes_file.read_text()) if sizes_file.exists() else {}
    if "each" not in sizes:  # headers only: ~50 us an image
        each = [_header_size(f) for f in files]
        counts = Counter(filter(None, each))
        sizes = {"distinct": len(counts), "common": counts.most_common(3), "each": each}
        write_json(sizes_file, sizes)
    one_size = sizes["distinct"] == 1 and (short_side is None or min(sizes["common"][0][0]) <= short_side)
    if not one_size:
        if short_side is not None and "each" in sizes:
            return _decode_ragged(files, root, max_bytes, short_side, sizes["each"])
        log.info("data.decoded_cache: decoding on the fly (images of %d sizes, e.g. %s)", sizes["distinct"],
                 [tuple(wh) for wh, _ in sizes["common"]])
        return None, []
    (width, height), _ = sizes["common"][0]
    if (nbytes := len(files) * width * height * 3) > max_bytes:
        log.info("data.decoded_cache: decoding on the fly (%.1f GB decoded > data.decoded_max_gb)", nbytes / 1e9)
        return None, []
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    pixels = reserved_npy(tmp, (len(files), height, width, 3), np.uint8)
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
            write_json(sizes_file, {**sizes, "distinct": 2, "common": [[[width, height], 1], [img.size, 1]]})
            return _decode_ragged(files, root, max_bytes, short_side, sizes["each"]) if short_side else (None, [])
        pixels[i] = np.asarray(img)
    pixels.flush()
    del pixels
    bad_file.write_text(json.dumps(bad))
    os.replace(tmp, path)
    return str(path), bad


def _reduced(width: int, height: int, short_side: int) -> tuple[int, int]:
    scale = min(1.0, short_side / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def reduced_rgb(path: Path, short_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(H x W x 3 pixels with the short side reduced to `short_side`, never enlarged; the source's (width,
    height)), JPEGs decoded in the DCT domain at the nearest larger scale. Raises what `load_rgb` raises."""
    source = {}

    def need(width: int, height: int) -> tuple[int, int]:
        source["size"] = (width, height)
        return _reduced(width, height, short_side)

    img = load_rgb(path, need)
    target = _reduced(*source["size"], short_side)
    if img.size != target:  # (DCT scaling stops at the nearest larger size)
        img = img.resize(target, Image.BILINEAR, reducing_gap=None)
    return np.asarray(img), source["size"]


def _decode_ragged(files: Sequence[Path], root: Path, max_bytes: float, short_side: int,
                   header_sizes: list) -> tuple[str | None, list[int]]:
    """The working-resolution variant of `decode_to_cache` (see there)."""
    path = cache_path(root, "decoded", files, hashlib.sha256(f"short-side-{short_side}".encode()), suffix=".bin")
    index_file, bad_file = Path(f"{path}.index.npy"), path.with_suffix(".bad.json")
    if path.exists() and index_file.exists():
        try:
            index = np.load(index_file)
            intact = index.shape == (len(files), 5) and path.stat().st_size == int((index[:, 1] * index[:, 2] * 3).sum())
        except (OSError, ValueError):
            intact = False
        if intact:
            return str(path), json.loads(bad_file.read_text()) if bad_file.exists() else []
        log.warning("decoded-image cache %s is damaged: decoding again", path)
    estimate = sum(3 * np.prod(_reduced(*wh, short_side)) for wh in header_sizes if wh)
    if estimate > max_bytes:
        log.info("data.decoded_cache: decoding on the fly (%.1f GB at a %d px short side > data.decoded_max_gb)",
                 estimate / 1e9, short_side)
        return None, []
    index, bad, offset = np.zeros((len(files), 5), np.int64), [], 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as out:
        for i, f in enumerate(tqdm(files, desc=f"decoding images once at a {short_side} px short side", unit="img",
                                   mininterval=2)):
            try:
                pixels, source = reduced_rgb(f, short_side)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                bad.append(i)
                continue
            out.write(pixels.tobytes())
            index[i] = offset, *pixels.shape[:2], *source
            offset += pixels.size
    np.save(index_file, index)
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


def render_views(dataset: Dataset, view: tuple[str, int], policy: dict, views: int, seed: int, root: Path,
                 batch_size: int = 256, num_workers: int = 0) -> str:
    """Render views 0..K-1 of every image of `dataset` (whose samples hold `view` = (name, S) only) once,
    into `root/views-<key>.npy` (K x N x S x S x 3 uint8), and return its path.

    With cached soft targets the student's crops repeat every K epochs; cropping and resizing them again
    each epoch costs training speed on a machine whose cores also run the step (measured in
    benchmarks/throughput.py). The key covers the file list and `policy` (the crops, the seed, K and the
    files that could not be read)."""
    name, size = view
    path = cache_path(root, "views", dataset.files, hashlib.sha256(json.dumps(policy, sort_keys=True).encode()),
                      suffix=".npy")
    if path.exists():
        if (why := npy_damage(path, (views, len(dataset), size, size, 3), np.uint8)) is None:
            return str(path)
        log.warning("rendered views %s are damaged (%s): rendering again", path, why)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(views, len(dataset), size, size, 3))
    offset = header.offset
    del header
    loader = DataLoader(dataset, batch_size=batch_size, sampler=_Views(len(dataset), views, seed),
                        num_workers=num_workers, worker_init_fn=loader_worker_init)
    with tmp.open("r+b") as f:  # rows arrive in file order: plain sequential writes, nothing mapped
        f.seek(offset)
        for batch in tqdm(loader, desc=f"rendering {views} views at {size} px", unit="batch", mininterval=2):
            f.write(batch[name].permute(0, 2, 3, 1).contiguous().numpy().tobytes())
    os.replace(tmp, path)
    return str(path)
