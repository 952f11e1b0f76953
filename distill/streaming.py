"""Folders that outgrow one machine: the images at working resolution as litdata chunks (`data.streaming_dir`).

`optimize_to_litdata` writes each image once, reduced like the local decoded cache (`arrays.decode_to_cache`:
its short side at the working resolution, JPEGs decoded in the DCT domain) with its source size, into a
litdata dataset on a disk every process can read; `StreamedPixels` reads image i back through litdata's
`StreamingDataset`. Indices, crops, views and soft-target caches are the local cache's: only where the
pixels come from changes, and every DDP rank reads the images of its own shard (`data.EpochSampler`).
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
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .arrays import reduced_rgb
from .disk import cache_path, locked

log = logging.getLogger(__name__)
SUFFIX = ".litdata"
DDP_VARIABLES = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT"}


def optimize_to_litdata(files: Sequence[Path], root: str | Path, short_side: int, num_workers: int = 1) -> str:
    """The litdata dataset of `files` at a `short_side` working resolution under `root`, written on first use
    (`litdata.optimize`, its own progress bar) and reused while the files are unchanged; returns its path."""
    out = cache_path(root, "decoded", files, hashlib.sha256(f"short-side-{short_side}".encode()), suffix=SUFFIX)
    with locked(out.with_suffix(".lock")):  # one writer (rank, node or run); the others wait, then read it
        if (out / "index.json").exists():
            # counted from the index: under DDP a StreamingDataset's len() is one rank's share
            chunks = json.loads((out / "index.json").read_text())["chunks"]
            if sum(c["chunk_size"] for c in chunks) == len(files):
                return str(out)
            log.warning("litdata dataset %s does not hold %d images: writing it again", out, len(files))
        shutil.rmtree(out, ignore_errors=True)  # an optimize that died leaves chunks without index.json
        log.info("writing %d images at a %d px short side as litdata chunks in %s", len(files), short_side, out)
        # In a process of its own, outside any DDP group: in a DDP rank (torch.distributed initialised, or its
        # variables set) litdata's writer expects every rank to write a part and waits for the others forever.
        env = {k: v for k, v in os.environ.items() if k not in DDP_VARIABLES}
        done = subprocess.run([sys.executable, "-m", "distill.streaming", str(out), str(short_side),
                               str(max(1, num_workers))], input="\n".join(map(str, files)), text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"litdata could not write {out} (exit {done.returncode}; its messages are above)")
    return str(out)


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
