"""Observers of a run (the student's cost, one metrics row per validation; summary.json is train.py's), and
the wall-time budget that shortens a run to fit."""
from __future__ import annotations

import csv
import logging
import math
import resource
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only

from .disk import atomic_write
from .optim import build_schedule

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunReport(pl.Callback):
    """Logs the trained model's params / mult-adds / CPU latency once (`student/*`; `teacher/*` when it trains
    a teacher), keeps one row of `val/*` metrics per validation (written to `metrics.csv`), and gives the cost
    and the final and best rows for summary.json.

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
        role = "student" if hasattr(pl_module, "student") else "teacher"  # the teacher task trains `.model`
        model = pl_module.student if role == "student" else pl_module.model
        img_size = model.pretrained_cfg["input_size"][-1]
        if not self.cost:
            self.cost = self.cost_fn(model, img_size, latency=self.latency)
        for logger in trainer.loggers:
            logger.log_metrics({f"{role}/{k}": float(v) for k, v in self.cost.items()}, step=trainer.global_step)
        log.info("%s cost: %s", role, self.cost)

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
    loader, plus Lightning's own per-step work), after `warmup` steps, the torch threads it ran on (jobs run
    side by side share the cores) and the main process's peak RSS. Read by train.py into summary.json.

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
                "threads": torch.get_num_threads(),
                "wait_fraction": round(self.wait_s / total, 4) if total else None,
                "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}


class TimeBudget(pl.Callback):
    """Shortens a run that would not fit in `minutes` of wall time, learning-rate schedule included.

    After `warmup_steps` it times `measure_steps` steps (data loading and logging included); if the run's
    `max_steps` would not end within the budget, counted from the start of the fit, it lowers them to the
    steps that fit in `(1 - reserve)` of it (the reserve is for validations and writing files; never below
    twice the steps already taken) and rebuilds the schedule for that length, so a one-cycle or cosine
    schedule still ends annealed (Lightning's `max_time` stops wherever the clock runs out). It never
    lengthens a run. Rank 0 decides for all ranks, and the decision is kept in checkpoints, so a resumed
    run keeps its length. The module must build its schedule as `scheduler_fn(optimizer,
    total_steps=...)`, as `DistillModule` and `TeacherModule` do.

    Args:
        minutes: the budget of the fit, in minutes of the whole machine.
        jobs_at_once: jobs sharing the machine side by side, each on its share of the cores (a multirun's
            `hydra.launcher.n_jobs`): each gets `minutes * jobs_at_once` of wall time, the same machine time
            as when they run one after the other.
        warmup_steps, measure_steps: steps left out of the timing (first-step allocations), steps timed.
        reserve: the fraction of the budget kept for what is not a training step.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, minutes: float | None, jobs_at_once: int = 1, warmup_steps: int = 10,
                 measure_steps: int = 30, reserve: float = 0.08, clock: Callable[[], float] = time.monotonic):
        if minutes is not None and (minutes <= 0 or jobs_at_once < 1 or not 0 <= reserve < 1):
            raise ValueError(f"callbacks.time_budget: minutes must be > 0, jobs_at_once >= 1 and reserve in [0, 1) "
                             f"(got {minutes}, {jobs_at_once}, {reserve})")
        self.minutes = None if minutes is None else minutes * jobs_at_once  # wall time
        self.warmup_steps, self.measure_steps = warmup_steps, measure_steps
        self.reserve, self.clock = reserve, clock
        self.total_steps: int | None = None  # the decided length; None: not decided yet (or not shortened)
        self.decided = minutes is None  # (None: no budget, nothing to decide)

    def state_dict(self) -> dict:
        return {"total_steps": self.total_steps, "decided": self.decided}

    def load_state_dict(self, state: dict) -> None:
        self.total_steps, self.decided = state["total_steps"], state["decided"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.minutes is not None and (trainer.max_steps < 0 or getattr(pl_module, "scheduler_fn", None) is None):
            raise ValueError("callbacks.time_budget.minutes needs trainer.max_steps and a learning-rate schedule "
                             "(distill.scheduler / finetune.scheduler)")
        self.fit_start, self.step_start = self.clock(), None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.total_steps is not None:  # resumed after the decision: the same length, the same schedule
            self._shorten(trainer, pl_module, self.total_steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.decided:
            return
        step = trainer.global_step
        if self.step_start is None:
            if step >= self.warmup_steps:
                self.step_start, self.first_step = self.clock(), step
            return
        if step - self.first_step < self.measure_steps:
            return
        now = self.clock()
        per_step = (now - self.step_start) / (step - self.first_step)
        fits = step + int(((1 - self.reserve) * 60 * self.minutes - (now - self.fit_start)) / per_step)
        fits = trainer.strategy.broadcast(fits, src=0)  # (ranks timed apart; they must stop at one step)
        self.decided = True
        if fits < trainer.max_steps:
            self.total_steps = max(2 * step, fits)  # (a schedule squeezed into the steps already taken has no shape)
            if fits < 2 * step:
                log.warning("callbacks.time_budget: %.1f min hardly holds the steps already taken; "
                            "running %d steps", self.minutes, self.total_steps)
            few = self.total_steps < trainer.max_steps // 2  # a schedule cut this short trains a weaker model
            (log.warning if few else log.info)(
                "callbacks.time_budget: %.2f s a step, so %d of trainer.max_steps=%d fit in %.0f min; the schedule "
                "now ends there%s", per_step, self.total_steps, trainer.max_steps, self.minutes,
                " (expect a weaker model; raise callbacks.time_budget.minutes to train them all)" if few else "")
            self._shorten(trainer, pl_module, self.total_steps)

    @staticmethod
    def _shorten(trainer: pl.Trainer, pl_module: pl.LightningModule, total_steps: int) -> None:
        trainer.fit_loop.epoch_loop.max_steps = total_steps
        config = trainer.lr_scheduler_configs[0]
        scheduler = build_schedule(pl_module.scheduler_fn, config.scheduler.optimizer, total_steps)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")  # (on purpose)
            for _ in range(trainer.global_step):  # the new schedule, at the step the run is at
                scheduler.step()
        config.scheduler = scheduler


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
