"""Observers of a run: the student's cost, one metrics row per validation (summary.json is train.py's)."""
from __future__ import annotations

import csv
import logging
import math
import resource
import time
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only

from .disk import atomic_write

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunReport(pl.Callback):
    """Logs the student's params / mult-adds / CPU latency once, keeps one row of `val/*` metrics per
    validation (written to `metrics.csv`), and gives the cost and the final and best rows for summary.json.

    Args:
        output_dir: the run directory.
        cost_fn: `(model, img_size) -> dict` (e.g. `students.cost.cost_report`); its keys are logged
            as `student/<key>`.
        monitor: the metric that picks the best row.
        latency: measure CPU latency too (a few seconds for large students).
    """

    def __init__(self, output_dir: str, cost_fn: Callable[..., dict], monitor: str = "val/agreement",
                 latency: bool = True):
        self.output_dir, self.cost_fn, self.monitor, self.latency = Path(output_dir), cost_fn, monitor, latency
        self.rows: list[dict] = []
        self.cost: dict = {}

    def state_dict(self) -> dict:
        return {"rows": self.rows, "cost": self.cost}

    def load_state_dict(self, state: dict) -> None:
        self.rows, self.cost = state["rows"], state["cost"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        student = pl_module.student if hasattr(pl_module, "student") else pl_module.model  # teacher task: .model
        img_size = student.pretrained_cfg["input_size"][-1]
        if not self.cost:
            self.cost = self.cost_fn(student, img_size, latency=self.latency)
        for logger in trainer.loggers:
            logger.log_metrics({f"student/{k}": float(v) for k, v in self.cost.items()}, step=trainer.global_step)
        log.info("student cost: %s", self.cost)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # (not on_validation_epoch_end: callbacks run before the module's hook that logs the epoch metrics)
        if trainer.sanity_checking:
            return
        metrics = {k: _plain(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if metrics:
            self.rows.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics})
            self._write_csv()
            if trainer.is_global_zero:
                log.info("epoch %d, step %d: %s", trainer.current_epoch, trainer.global_step, "  ".join(
                    f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))

    @rank_zero_only
    def _write_csv(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)

        atomic_write(self.output_dir / "metrics.csv", write)

    def summary(self) -> dict:
        scored = [r for r in self.rows if r.get(self.monitor) is not None]
        best = max(scored, key=lambda r: r[self.monitor]) if scored else None
        return {"final": self.rows[-1] if self.rows else None, "best": best, "monitor": self.monitor,
                "cost": self.cost}


class FaultCheckpoint(pl.Callback):
    """Save a resumable checkpoint when a run is stopped (SIGTERM from a scheduler, Ctrl-C) or diverges.

    SIGTERM: Lightning stops at the next step boundary; the checkpoint goes to `last.ckpt`, which
    `resume=auto` picks up. A non-finite loss is caught before the optimizer step, so the weights saved
    in `before-fault.ckpt` are the last good ones.
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, FloatingPointError):
            name = "before-fault.ckpt"
        elif isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            name = "last.ckpt"
        else:
            return
        path = self.dirpath / name
        trainer.save_checkpoint(path)  # Lightning writes checkpoints atomically (temp file + rename)
        log.warning("run stopped (%s) at epoch %d, step %d: checkpoint saved to %s", type(exception).__name__,
                    trainer.current_epoch, trainer.global_step, path)


class Throughput(pl.Callback):
    """Training images per second and the share of wall time spent between steps (waiting on the data
    loader, plus Lightning's own per-step work), after `warmup` steps, and the main process's peak RSS.
    Read by train.py into summary.json.

    Args:
        warmup: steps not timed (allocator, thread pools, first batches from new workers).
    """

    def __init__(self, warmup: int = 5):
        self.warmup = warmup
        self.images, self.step_s, self.wait_s = 0, 0.0, 0.0
        self._start: float | None = None
        self._end: float | None = None
        self._seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._seen >= self.warmup and self._end is not None:
            self.wait_s += now - self._end
        self._start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._seen >= self.warmup:
            self.step_s += now - self._start
            self.images += len(batch["label"])
        self._seen += 1
        self._end = now

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._end = None  # the gap across validation is not data waiting

    @property
    def stats(self) -> dict:
        total = self.step_s + self.wait_s
        return {"images_per_s": round(self.images / total, 2) if total else None, "timed_images": self.images,
                "wait_fraction": round(self.wait_s / total, 4) if total else None,
                "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}


def peak_rss_kb() -> int:
    """This process's peak resident memory. On Linux from /proc (VmHWM): getrusage's ru_maxrss survives
    exec, so a process started by a bigger one (a benchmark driver, a launcher) reports its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # (kB on Linux; other systems: no /proc)
