"""TeacherModule: train or fine-tune a timm classifier on a labeled folder (`python train_teacher.py`)."""
from __future__ import annotations

from typing import Callable

import lightning.pytorch as pl
import torch
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from distill.losses import hard_label_loss
from distill.normalize import Normalize
from distill.optim import build_schedule


class TeacherModule(pl.LightningModule):
    """Supervised training of `model` on labeled batches ({"teacher": uint8 images, "label": int}).

    Args:
        model: a timm classifier whose `pretrained_cfg` gives its mean/std.
        optimizer: partial optimizer, called with the parameters.
        scheduler: partial LR scheduler, called with the optimizer and `total_steps`; stepped each step
            (e.g. `distill.optim.warmup_cosine`, or torch's `OneCycleLR` with its `max_lr`).
        label_smoothing: cross-entropy label smoothing (with mixup: folded into its soft targets).
        channels_last: NHWC memory format (faster convolutions on CPU).
        mixup: keyword arguments of `timm.data.Mixup` (mixup_alpha, cutmix_alpha, prob, switch_prob...);
            None trains on the unmixed batch. Trained with soft-target cross-entropy.
        erase_prob: timm's RandomErasing probability per image (per-pixel noise, after normalisation).
        ema_decay: keep a `timm.utils.ModelEmaV3` of the weights with this decay; both are validated and
            `best_model()` is whichever scored higher at the last validation. None: no EMA.
    """

    def __init__(self, model: nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                 label_smoothing: float = 0.1, channels_last: bool = True, mixup: dict | None = None,
                 erase_prob: float = 0.0, ema_decay: float | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"], logger=False)
        self.model = model.requires_grad_(True).train()  # (teachers arrive frozen in eval mode; Lightning keeps modes)
        self.optimizer_fn, self.scheduler_fn, self.label_smoothing = optimizer, scheduler, label_smoothing
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.normalize = Normalize(model, self.memory_format)
        self.mixup = Mixup(**mixup, label_smoothing=label_smoothing, num_classes=model.num_classes) if mixup else None
        self.erase_prob, self.erase = erase_prob, None  # (RandomErasing draws its noise on the fit's device)
        self.to(memory_format=self.memory_format)
        self.ema = ModelEmaV3(self.model, decay=ema_decay).requires_grad_(False) if ema_decay else None
        self.val_top1 = MulticlassAccuracy(model.num_classes, top_k=1, average="micro")
        self.val_top1_ema = MulticlassAccuracy(model.num_classes, top_k=1, average="micro")
        self.val_top1_best = MaxMetric()
        self.ema_is_better = False
        self.validated_at: int | None = None  # the step of the last validation: the saved file's score is from there

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(images))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, y = self.normalize(batch["teacher"]), batch["label"]
        if self.erase is not None:
            x = self.erase(x)
        if self.mixup is not None and len(y) % 2 == 0:  # (timm's Mixup pairs the batch with its reverse)
            x, soft = self.mixup(x, y)
            loss = SoftTargetCrossEntropy()(self.model(x), soft)
        else:
            # (images mixed by the data module, data.mix, carry the partner's label and lambda: the same mix)
            loss = hard_label_loss(self.model(x), y, batch.get("label_mixed"), batch.get("lam"), self.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def on_fit_start(self) -> None:
        if self.erase_prob:
            self.erase = RandomErasing(self.erase_prob, mode="pixel", device=self.device)

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        x = self.normalize(batch["teacher"])
        self.val_top1.update(self.model(x), batch["label"])
        if self.ema is not None:
            self.val_top1_ema.update(self.ema(x), batch["label"])

    def on_validation_epoch_end(self) -> None:
        top1 = self.val_top1.compute()
        self.val_top1.reset()
        metrics = {"val/top1_raw": top1}
        if self.ema is not None:
            metrics["val/top1_ema"] = self.val_top1_ema.compute()
            self.val_top1_ema.reset()
            self.ema_is_better = bool(metrics["val/top1_ema"] > top1)
            top1 = torch.maximum(top1, metrics["val/top1_ema"])  # the score of the model `best_model` gives
        if not self.trainer.sanity_checking:
            self.validated_at = self.global_step
            self.val_top1_best.update(top1)
            self.log_dict({"val/top1": top1, "val/top1_best": self.val_top1_best.compute(), **metrics},
                          prog_bar=True)

    def best_model(self) -> nn.Module:
        """The weights to keep: the EMA where it scored higher at the last validation, else the trained ones."""
        return self.ema.module if self.ema is not None and self.ema_is_better else self.model

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ema_is_better"] = self.ema_is_better

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.ema_is_better = checkpoint.get("ema_is_better", False)

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_fn(self.model.parameters())
        if self.scheduler_fn is None:
            return {"optimizer": optimizer}
        scheduler = build_schedule(self.scheduler_fn, optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
