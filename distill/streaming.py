"""Folders that outgrow one machine: the images at working resolution as litdata chunks (`data.streaming_dir`).

`optimize_to_litdata` writes each image once, reduced like the local decoded cache (`arrays.decode_to_cache`:
its short side at the working resolution, JPEGs decoded in the DCT domain) with its source size, into a
litdata dataset on a disk every process can read; `StreamedPixels` reads image i back through litdata's
`StreamingDataset`. Indices, crops, views and soft-target caches are the local cache's: only where the
pixels come from changes, and every DDP rank reads the images of its own shard (`data.EpochSampler`).

`data.streaming_dir` is a folder on a disk every process can read, or object storage: `s3://`, `gs://` or
`r2://` (written by global rank 0 through litdata's `optimize`, the other ranks waiting for its index),
or `azure://`, `hf://` and `local:/path` (read only: litdata's `local:` copies chunks as from a bucket).
Chunks fetched from a bucket are kept in litdata's cache, `$LITDATA_CACHE_DIR` (default
~/.lightning/chunks), on each node.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .arrays import reduced_rgb
from .disk import cache_name, cache_path, locked

log = logging.getLogger(__name__)
SUFFIX = ".litdata"
REMOTE = ("s3://", "gs://", "r2://", "azure://", "hf://", "local:")
WRITABLE = ("s3://", "gs://", "r2://")  # where litdata's optimize can upload
DDP_VARIABLES = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT"}


def optimize_to_litdata(files: Sequence[Path], root: str | Path, short_side: int, num_workers: int = 1) -> str:
    """The litdata dataset of `files` at a `short_side` working resolution under `root`, written on first use
    (`litdata.optimize`, its own progress bar) and reused while the files are unchanged; returns its path."""
    digest = hashlib.sha256(f"short-side-{short_side}".encode())
    if str(root).startswith(REMOTE):
        return _in_object_storage(files, str(root), cache_name("decoded", files, digest) + SUFFIX, short_side,
                                  num_workers)
    out = cache_path(root, "decoded", files, digest, suffix=SUFFIX)
    with locked(out.with_suffix(".lock")):  # one writer (rank, node or run); the others wait, then read it
        count = _count(str(out))
        if count == len(files):
            return str(out)
        if count is not None:
            log.warning("litdata dataset %s does not hold %d images: writing it again", out, len(files))
        shutil.rmtree(out, ignore_errors=True)  # an optimize that died leaves chunks without index.json
        log.info("writing %d images at a %d px short side as litdata chunks in %s", len(files), short_side, out)
        _write(files, str(out), short_side, num_workers)
    return str(out)


def _write(files: Sequence[Path], out: str, short_side: int, num_workers: int) -> None:
    """`_optimize` in a process of its own, outside any DDP group: in a DDP rank (torch.distributed
    initialised, or its variables set) litdata's writer expects every rank to write a part and waits for the
    others forever."""
    env = {k: v for k, v in os.environ.items() if k not in DDP_VARIABLES}
    done = subprocess.run([sys.executable, "-m", "distill.streaming", out, str(short_side), str(max(1, num_workers))],
                          input="\n".join(map(str, files)), text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"litdata could not write {out} (exit {done.returncode}; its messages are above)")


def _in_object_storage(files: Sequence[Path], root: str, name: str, short_side: int, num_workers: int) -> str:
    """The litdata dataset `root/name` in a bucket: global rank 0 writes it when it is missing and the other
    ranks wait for its index; a store litdata cannot write to must already hold it."""
    url = f"{root.rstrip('/')}/{name}"
    if _count(url) == len(files):
        return url
    if not url.startswith(WRITABLE):
        raise ValueError(f"data.streaming_dir={root} holds no litdata dataset {name} of these {len(files)} images, "
                         f"and litdata writes only to {', '.join(WRITABLE)}: write it with data.streaming_dir=DIR "
                         f"(a local folder) and copy DIR/{name} there")
    if _first_process():
        log.info("writing %d images at a %d px short side as litdata chunks to %s", len(files), short_side, url)
        _write(files, url, short_side, num_workers)
    else:
        log.info("waiting for rank 0 to write %s", url)
        while _count(url) != len(files):
            time.sleep(10)
    return url


def _count(url: str) -> int | None:
    """How many items the index of the litdata dataset at `url` (a folder or a bucket) lists, None when there
    is no readable index (counted from the index: under DDP a StreamingDataset's len() is one rank's share)."""
    from litdata.streaming.downloader import get_downloader

    with tempfile.TemporaryDirectory() as tmp:
        try:
            get_downloader(url, tmp, []).download_file(f"{url}/index.json", os.path.join(tmp, "index.json"))
            chunks = json.loads(Path(tmp, "index.json").read_text())["chunks"]
        except Exception:  # missing, unreadable or no access: each store's client raises its own errors
            return None
    return sum(c["chunk_size"] for c in chunks)


def _first_process() -> bool:
    """Global rank 0, known before the process group exists (the data module is built before `fit`):
    Lightning's rank from the launcher's variables, on the first node."""
    from lightning.pytorch.utilities import rank_zero_only

    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return rank_zero_only.rank == 0 and node == 0


def _optimize(files: list[str], out: str, short_side: int, num_workers: int) -> None:
    from litdata import optimize

    optimize(fn=functools.partial(_reduced_image, short_side=short_side), inputs=files, output_dir=out,
             chunk_bytes="64MB", num_workers=num_workers, keep_data_ordered=True, mode="overwrite")


def _reduced_image(path: str, short_side: int) -> dict:
    """One image as litdata stores it; an undecodable one is stored empty and skipped when read."""
    try:
        pixels, source = reduced_rgb(Path(path), short_side)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return {"pixels": np.zeros((0, 0, 3), np.uint8), "source": np.zeros(2, np.int64)}
    return {"pixels": pixels, "source": np.asarray(source, np.int64)}


class StreamedPixels:
    """`arrays.RaggedPixels`'s reader over a litdata dataset: `read(i)` returns (H x W x 3 pixels, the source's
    (width, height)), the pixels empty for an undecodable image. Opened once per process (DataLoader workers
    open their own)."""

    def __init__(self, path: str):
        self.path, self._dataset, self._pid = path, None, None

    def read(self, i: int) -> tuple[np.ndarray, tuple[int, int]]:
        if self._pid != os.getpid():
            from litdata import StreamingDataset

            self._dataset, self._pid = StreamingDataset(self.path), os.getpid()
        item = self._dataset[int(i)]
        return item["pixels"], (int(item["source"][0]), int(item["source"][1]))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_dataset": None, "_pid": None}


if __name__ == "__main__":  # python -m distill.streaming OUT SHORT_SIDE WORKERS < one image path a line
    _optimize(sys.stdin.read().splitlines(), sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
