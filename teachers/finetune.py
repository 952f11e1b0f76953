"""TeacherModule: train or fine-tune a timm classifier on a labeled folder (`python train.py task=teacher`)."""
from __future__ import annotations

from typing import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy


class TeacherModule(pl.LightningModule):
    """Supervised training of `model` on labeled batches ({"teacher": uint8 images, "label": int}).

    Args:
        model: a timm classifier whose `pretrained_cfg` gives its mean/std.
        optimizer: partial optimizer, called with the parameters.
        scheduler: partial LR scheduler, called with the optimizer and `total_steps`; stepped each step.
        label_smoothing: cross-entropy label smoothing.
        channels_last: NHWC memory format (faster convolutions on CPU).
    """

    def __init__(self, model: nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                 label_smoothing: float = 0.1, channels_last: bool = True):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"], logger=False)
        self.model = model.requires_grad_(True)
        self.optimizer_fn, self.scheduler_fn, self.label_smoothing = optimizer, scheduler, label_smoothing
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        cfg = resolve_model_data_config(model)
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.to(memory_format=self.memory_format)
        self.val_top1 = MulticlassAccuracy(model.num_classes, top_k=1, average="micro")
        self.val_top1_best = MaxMetric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255).sub_(self.mean).div_(self.std)
        return self.model(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self(batch["teacher"]), batch["label"], label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_top1.update(self(batch["teacher"]), batch["label"])

    def on_validation_epoch_end(self) -> None:
        top1 = self.val_top1.compute()
        self.val_top1.reset()
        if not self.trainer.sanity_checking:
            self.val_top1_best.update(top1)
            self.log_dict({"val/top1": top1, "val/top1_best": self.val_top1_best.compute()}, prog_bar=True)

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_fn(self.model.parameters())
        if self.scheduler_fn is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_fn(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
