"""Test helpers: train.py run as a command, and callbacks that simulate failures inside a real run (added
with +callbacks.NAME overrides)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
DDP = ("trainer=ddp", "trainer.devices=2", "data.batch_size=4")  # 2 processes, against one at batch 8


def run_cli(args: list[str], entry: str = "train.py", **kw) -> subprocess.CompletedProcess:
    """`python train.py ARGS` (or another entry point) from the project root, as a user runs it."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, entry, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env, **kw)


class CrashOnce(pl.Callback):
    """Die like `kill -9` (no cleanup at all) at `at_step`, once: `marker` remembers it happened. `group`:
    signal the whole process group (DataLoader workers too), as `timeout`, Slurm and a terminal's Ctrl-C do."""

    def __init__(self, at_step: int, marker: str, sig: str = "SIGKILL", group: bool = False):
        self.at_step, self.marker, self.sig, self.group = at_step, Path(marker), getattr(signal, sig), group

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.at_step and not self.marker.exists():
            self.marker.touch()
            if self.group:  # from another process, as `timeout` does (workers take a parent's SIGTERM as a request)
                subprocess.run([sys.executable, "-c", f"import os; os.killpg({os.getpgrp()}, {int(self.sig)})"],
                               start_new_session=True, check=True)
            else:
                os.kill(os.getpid(), self.sig)


class PoisonWeights(pl.Callback):
    """Put a NaN into the student's first weight at `at_step`, as a diverging run would."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.student.parameters()).fill_(float("nan"))
