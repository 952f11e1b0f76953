"""Soft-target cache: the teacher's logits for K views of every image, computed once, memory-mapped.

`SoftTargets` (the `soft_targets` config group) says where a run's targets come from: the teacher on every
training batch ("online") or this cache ("cached"); the validation folder's logits are cached either way.

View k of image i is a pure function of (seed, k, i) (see `data.EpochSampler`), so the crop box and
flip need not be stored: at epoch e the student gets view e mod K, rebuilt at its own resolution from
the same parameters, and the cached logits are the teacher's output for exactly that crop.

Layout of `<root>/<split>-<what>-<version>/` (`disk.cache_path`): logits.npy (fp16, K x N x C), done.npy (uint8, K x N: rows written),
meta.json (what was hashed), complete.json (written last: only then is the cache read as complete).
With `topk` (teachers with many classes): logits.npy holds each row's k largest logits and one logit
for every other class (K x N x k+1), classes.npy their class indices (K x N x k); see `topk_rows`.
A build that dies resumes at the first row not yet done; builders take a file lock, so concurrent runs
build it once and the others wait, then read. DDP ranks share one build instead (`Ranks`): each computes
its own rows on its own device, straight into the same files.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from .disk import cache_path, locked, npy_damage, reserved_npy, write_json
from .runtime import loader_worker_init
from .teacher import FrozenTeacher

log = logging.getLogger(__name__)
FLUSH_EVERY = 16  # batches between flushes of logits + progress to disk


@dataclass(frozen=True)
class Ranks:
    """The processes that build one cache together (DDP ranks, on one machine or over a shared disk): rank r
    computes the rows (view k, image i) with (k * N + i) % world == r; `barrier` waits for all of them."""
    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None


class SoftTargets:
    """Where a run's soft targets come from (the `soft_targets` config group).

    Args:
        root: the caches' folder (`paths.cache_dir`/soft_targets).
        mode: "online" runs the teacher on every training batch; "cached" computes its logits once for
            `views` random views (crop + flip) per training image, and epoch e trains on view e mod K.
            Either way the validation folder's logits (one deterministic view) are computed once, on disk.
        views: K, cached mode.
        topk: cached mode: keep each view's k largest logits and one for the rest (`topk_rows`), for
            teachers with 1,000 classes or more. Validation logits are always whole, for exact metrics.
        view_mean: cached mode: the target for view k of image i is (1 - w) z_ki + w mean_j z_ji, the
            teacher's logits for that view moved by weight w toward their mean over the image's K views (a
            K-view test-time ensemble of the teacher: its errors on single crops average out). Applied as the
            rows are read, so one cache serves every w; 0 is the view's own output.
        teacher: the teacher as the run runs it (`DistillModule.frozen_teacher`).
    """

    def __init__(self, root: str | Path, teacher: FrozenTeacher, mode: str = "online", views: int = 4,
                 topk: int | None = None, view_mean: float = 0.0):
        if mode not in ("online", "cached"):
            raise ValueError(f"soft_targets={mode!r}: use online or cached")
        if views < 1:
            raise ValueError(f"soft_targets.views={views} must be >= 1")
        if topk is not None and not 0 < topk < teacher.num_classes:
            raise ValueError(f"soft_targets.topk={topk} must lie between 1 and the teacher's {teacher.num_classes - 1}")
        if not 0 <= view_mean <= 1:
            raise ValueError(f"soft_targets.view_mean={view_mean} must lie in [0, 1]")
        self.root, self.teacher, self.mode, self.views, self.topk = Path(root), teacher, mode, views, topk
        self.view_mean = view_mean

    def cached(self, split: str) -> bool:
        return split == "val" or self.mode == "cached"

    def build(self, split: str, dataset, policy: dict, seed: int, batch_size: int, num_workers: int,
              ranks: Ranks = Ranks()) -> dict:
        """Fill or reuse `split`'s cache over `dataset` (its teacher view); returns `build_soft_targets`'s report."""
        train = split == "train"
        report = build_soft_targets(self.teacher, dataset, self.views if train else 1, self.root, seed, policy,
                                    batch_size, num_workers, name=split, topk=self.topk if train else None, ranks=ranks)
        return {**report, "view_mean": self.view_mean} if train and self.view_mean else report


def fingerprint(teacher: FrozenTeacher, policy: dict, views: int):
    """A digest of the teacher (its class and weights, and whether it runs in bf16), the view policy and K;
    `disk.cache_path` adds the files (paths, then sizes and mtimes)."""
    h = hashlib.sha256()
    model = teacher.model
    h.update(getattr(model, "teacher_name", type(model).__name__).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(json.dumps({**policy, "views": views, "bf16": teacher.bf16}, sort_keys=True).encode())
    return h


class _Pending(Sampler):
    """(index, seed, view) for every row not yet in the cache."""

    def __init__(self, rows: list[tuple[int, int]], seed: int):
        self.rows, self.seed = rows, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter([(i, self.seed, k) for k, i in self.rows])


def topk_rows(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B x k+1 values, B x k classes) for B x C logits: the k largest logits and, last, the one logit that
    gives each of the other C - k classes an equal share of their probability mass at T = 1
    (logsumexp(rest) - log(C - k), as FKD spreads the rest). `expand_topk` inverts it: at T = 1 the top-k
    probabilities and the mass of the rest are exact."""
    top, classes = logits.float().topk(k, dim=-1)  # B,k
    rest = logits.float().scatter(-1, classes, float("-inf"))  # B,C: the others only
    spread = torch.logsumexp(rest, -1, keepdim=True) - math.log(logits.shape[-1] - k)  # B,1
    return torch.cat([top, spread], -1), classes


def expand_topk(values: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """B x C logits from `topk_rows`'s (B x k+1, B x k)."""
    full = np.repeat(values[:, -1:].astype(np.float32), num_classes, axis=1)  # B,C
    np.put_along_axis(full, classes.astype(np.int64), values[:, :-1].astype(np.float32), axis=1)
    return full


@torch.inference_mode()
def build_soft_targets(teacher: FrozenTeacher, dataset, views: int, root: str | Path, seed: int, policy: dict,
                       batch_size: int = 128, num_workers: int = 1, name: str = "train",
                       topk: int | None = None, ranks: Ranks = Ranks()) -> dict:
    """Fill (or reuse) the cache for `dataset` (an `ImageFiles` yielding the "teacher" view), with every
    logit or (`topk`) each row's k largest (`topk_rows`). The teacher runs on its own device; with several
    `ranks`, every rank calls this at once and computes its share of the rows.

    Returns what the data module needs (`path`, `views`, and with top-k `classes`, `num_classes`) and a
    report: hit, rows computed now (= teacher forward passes), seconds, bytes on disk."""
    folder = cache_path(root, name, dataset.files,
                        fingerprint(teacher, {**policy, **({"topk": topk} if topk else {})}, views))
    report = {"path": str(folder / "logits.npy"), "views": views, "key": folder.name, "hit": True,
              "teacher_images": 0, "build_s": 0.0}
    if topk:
        report.update(classes=str(folder / "classes.npy"), num_classes=teacher.num_classes, topk=topk)
    shapes = _shapes(views, len(dataset), teacher.num_classes, topk)
    if _damage(folder, shapes) is not None:
        # Rank 0 holds the lock for all ranks. Under it, another run may have finished the cache meanwhile;
        # DDP ranks go on to `_fill` all the same (their barriers must pair up), with no rows left to do.
        with locked(folder / ".lock") if ranks.rank == 0 else nullcontext():
            why = _damage(folder, shapes) if ranks.rank == 0 else None
            if why is not None and (folder / "complete.json").exists():
                log.warning("soft-target cache %s is damaged (%s): rebuilding it", folder, why)
                for part in ("complete.json", "logits.npy", "classes.npy", "done.npy"):
                    (folder / part).unlink(missing_ok=True)
            if why is not None or ranks.world > 1:
                report.update(_fill(teacher, dataset, shapes, folder, seed, policy, batch_size, num_workers, topk,
                                    ranks), hit=False)
    report["bytes"] = sum(f.stat().st_size for f in folder.glob("*.npy"))
    by = f" by rank {ranks.rank} of {ranks.world}" if ranks.world > 1 else ""
    log.info("soft-target cache %s: %s, %.1f MB, %d teacher images now%s, %.1f s", name,
             "hit" if report["hit"] else "built", report["bytes"] / 1e6, report["teacher_images"], by, report["build_s"])
    return report


@contextmanager
def _sigterm_exits():
    """SIGTERM (a scheduler's stop) ends the build like Ctrl-C: rows done are flushed, the next run resumes."""
    def stop(signum, frame):
        log.warning("soft-target cache: stopped by SIGTERM; the rows done are kept, rerun to continue")
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _shapes(views: int, images: int, classes: int, topk: int | None) -> dict[str, tuple[tuple, type]]:
    """file name -> (shape, dtype) of a cache's arrays."""
    shapes = {"done.npy": ((views, images), np.uint8)}
    if topk:
        index_type = np.int16 if classes <= np.iinfo(np.int16).max else np.int32
        return {**shapes, "logits.npy": ((views, images, topk + 1), np.float16),
                "classes.npy": ((views, images, topk), index_type)}
    return {**shapes, "logits.npy": ((views, images, classes), np.float16)}


def _damage(folder: Path, shapes: dict) -> str | None:
    """None when the cache is complete and whole; else why not (unfinished, or damaged: see `npy_damage`)."""
    if not (folder / "complete.json").exists():
        return "unfinished"
    why = next(filter(None, (npy_damage(folder / f, shape, dtype) for f, (shape, dtype) in shapes.items())), None)
    if why is None and not np.load(folder / "done.npy", mmap_mode="r").all():
        why = "rows missing"
    return why


def _fill(teacher, dataset, shapes, folder, seed, policy, batch_size, num_workers, topk, ranks: Ranks) -> dict:
    start = time.perf_counter()
    views, n = shapes["done.npy"][0]
    if ranks.rank == 0 and any(npy_damage(folder / f, shape, dtype) for f, (shape, dtype) in shapes.items()):
        (folder / "meta.json").write_text(json.dumps({"policy": policy, "views": views, "images": n, "topk": topk,
                                                      "classes": teacher.num_classes}, indent=2))
        for f, (shape, dtype) in shapes.items():  # new, or cut short
            reserved_npy(folder / f, shape, dtype).flush()
    todo = None
    if ranks.rank == 0:  # counted before any rank writes
        todo = int((np.load(folder / "done.npy", mmap_mode="r") == 0).sum())
        if todo < views * n:
            log.info("resuming the soft-target cache build: %d of %d rows already done", views * n - todo, views * n)
    ranks.barrier()  # the files exist before any rank maps them
    done = np.load(folder / "done.npy", mmap_mode="r+")
    logits = np.load(folder / "logits.npy", mmap_mode="r+")
    indices = np.load(folder / "classes.npy", mmap_mode="r+") if topk else None
    # a rank's rows are fixed by (k, i), not by what is done when it looks: other ranks may be writing already
    pending = [(int(k), int(i)) for k, i in zip(*np.nonzero(done == 0)) if (k * n + i) % ranks.world == ranks.rank]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=_Pending(pending, seed), num_workers=num_workers,
                        worker_init_fn=loader_worker_init)
    try:
        with _sigterm_exits():
            bar = tqdm(loader, desc="teacher soft targets", unit="batch", mininterval=2, disable=ranks.rank > 0)
            for b, batch in enumerate(bar):
                out = teacher(batch["teacher"]).cpu()  # B,C
                k, i = batch["view"].numpy(), batch["index"].numpy()
                if topk:
                    out, top = topk_rows(out, topk)
                    indices[k, i] = top.numpy().astype(indices.dtype)
                logits[k, i] = out.numpy().astype(np.float16)
                done[k, i] = 1
                if b % FLUSH_EVERY == FLUSH_EVERY - 1:
                    _flush(logits, indices)  # logits before progress: a row marked done is always on disk
                    done.flush()
    finally:  # stopped or not, the rows done so far are kept for the next run
        _flush(logits, indices)
        done.flush()
    ranks.barrier()  # every rank's rows are on disk
    elapsed = time.perf_counter() - start
    if ranks.rank == 0:
        if not done.all():
            raise RuntimeError(f"soft-target cache {folder}: {int((done == 0).sum())} rows were not computed")
        write_json(folder / "complete.json", {"teacher_images": todo, "build_s": elapsed})
    return {"teacher_images": len(pending), "build_s": round(elapsed, 2)}


def _flush(*arrays) -> None:
    for array in arrays:
        if array is not None:
            array.flush()
