"""A quiet console: Lightning's advertising and the warnings this project expects, silenced by name (never
a blanket filter, so any other warning still shows)."""
from __future__ import annotations

import functools
import logging
import warnings

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

EXPECTED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own pytree use on newer torch
    r"Found \d+ module\(s\) in eval mode at the start of training",  # the frozen teacher (and an EMA copy)
    r"Precision bf16-mixed is not supported by the model summary",
    r"The '\w+_dataloader' does not have many workers",  # worker counts are chosen (data.num_workers)
    # a mid-epoch checkpoint continues exactly: DistillDataModule.train_dataloader skips the batches done
    r"You're resuming from a checkpoint that ended before the epoch ended",
)


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


@functools.cache
def quiet() -> None:
    for pattern in EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())


class ProgressBar(TQDMProgressBar):
    """Lightning's bar for training epochs; validation draws no bar of its own (its metrics are logged in
    one line by `RunReport`, and shown on the training bar)."""

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)
