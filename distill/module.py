"""DistillModule: one step of soft-target distillation from a frozen teacher into a student."""
from __future__ import annotations

import logging
from typing import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .fold import fold_batchnorm_in_place
from .losses import LOSSES, distillation_loss
from .normalize import Normalize
from .optim import build_schedule, weight_decay_groups
from .runtime import bf16_autocast, bf16_fast, count_macs
from .teacher import FrozenTeacher

log = logging.getLogger(__name__)

# `student_bf16: auto` trains the student under bf16 autocast from this input size and these forward
# mult-adds per image: below them, small feature maps leave the casts to pay for without faster
# convolutions to show for it (measured per width and size: BENCHMARKS.md, "Speed").
BF16_MIN_SIZE, BF16_MIN_MACS = 192, 250e6


def student_bf16_pays(student: nn.Module) -> bool:
    """Whether bf16 autocast speeds up this student's training step (see BF16_MIN_SIZE / BF16_MIN_MACS)."""
    size = resolve_model_data_config(student)["input_size"][-1]
    return size >= BF16_MIN_SIZE and count_macs(student, size) >= BF16_MIN_MACS


class DistillModule(pl.LightningModule):
    """Train `student` on `teacher`'s soft targets.

    Args:
        teacher: frozen classifier (timm model; its `pretrained_cfg` gives its mean/std).
        student: trainable classifier with the teacher's class count.
        optimizer: partial optimizer, called with parameter groups.
        scheduler: partial LR scheduler, called with the optimizer and `total_steps`; stepped each step.
        temperature: softmax temperature T of both models in the soft term (T^2 scaling applied).
        soft_weight, hard_weight: weights of the soft-target term and of the hard-label cross-entropy
            (used only on samples with labels).
        weight_decay: for full conv/linear weights (see `weight_decay_groups`).
        channels_last: NHWC memory format for both models (faster convolutions on CPU).
        teacher_bf16: run the teacher under bf16 autocast: True, False, or "auto" (where bf16 is native;
            its speed-up: BENCHMARKS.md, "Speed").
        student_bf16: train the student under bf16 autocast (weights, gradients and the optimizer stay
            fp32; validation runs in fp32, as the exported student will): True, False, or "auto" (where
            bf16 is native and the student is big enough to gain: `student_bf16_pays`).
        loss: the soft-target loss, a name in `losses.LOSSES`: kl (Hinton's), kl_std, dist or mse.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                 temperature: float = 4.0, soft_weight: float = 1.0, hard_weight: float = 0.0,
                 weight_decay: float = 4e-5, channels_last: bool = True, teacher_bf16: bool | str = "auto",
                 student_bf16: bool | str = "auto", loss: str = "kl"):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"distill.loss={loss!r}: use one of {', '.join(LOSSES)}")
        if temperature <= 0:
            raise ValueError(f"distill.temperature={temperature} must be > 0 (Hinton et al. use 1-20; try 4)")
        if student_bf16 not in (True, False, "auto"):
            raise ValueError(f"distill.student_bf16={student_bf16!r}: use true, false or auto")
        if soft_weight < 0 or hard_weight < 0 or soft_weight + hard_weight == 0:
            raise ValueError("distill.soft_weight and distill.hard_weight must be >= 0, and not both 0")
        self.save_hyperparameters(ignore=["teacher", "student", "optimizer", "scheduler"], logger=False)
        self.teacher = teacher.requires_grad_(False).eval()
        if folded := fold_batchnorm_in_place(self.teacher):  # frozen, so its BatchNorms are constants: one pass less each
            log.info("teacher: %d BatchNorm layers folded into the convolutions before them", folded)
        self.student = student
        self.optimizer_fn, self.scheduler_fn = optimizer, scheduler
        self.temperature, self.soft_weight, self.hard_weight = temperature, soft_weight, hard_weight
        self.soft_loss = LOSSES[loss]
        self.weight_decay, self.student_bf16 = weight_decay, student_bf16
        self._student_bf16_pays: bool | None = None
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.normalizers = nn.ModuleDict({name: Normalize(model, self.memory_format)
                                          for name, model in (("teacher", teacher), ("student", student))})
        # The teacher as it runs here and in the soft-target cache (`SoftTargets`): one definition of both.
        self.frozen_teacher = FrozenTeacher(self.teacher, self.normalizers["teacher"], teacher_bf16)
        self.to(memory_format=self.memory_format)
        # The teacher is rebuilt from its own checkpoint, so Lightning checkpoints hold the student only.
        self.strict_loading = False

        num_classes = student.num_classes
        top_k = min(5, num_classes)
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.val_agreement = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_teacher_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_kl = MeanMetric()
        self.val_top1_best, self.val_agreement_best = MaxMetric(), MaxMetric()
        self._reported_teacher = False

    def train(self, mode: bool = True) -> "DistillModule":
        super().train(mode)
        self.teacher.eval()  # frozen by construction: BN statistics and dropout stay in inference mode
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}

    def normalize(self, images: torch.Tensor, name: str) -> torch.Tensor:
        return self.normalizers[name](images)

    @property
    def use_student_bf16(self) -> bool:
        if self.student_bf16 != "auto":
            return bool(self.student_bf16)
        if not bf16_fast(self.device.type):
            return False
        if self._student_bf16_pays is None:  # once: a batch-1 forward under FlopCounterMode
            self._student_bf16_pays = student_bf16_pays(self.student)
            log.info("student under bf16 autocast: %s (distill.student_bf16=auto)", self._student_bf16_pays)
        return self._student_bf16_pays

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.frozen_teacher(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images, "student")
        with bf16_autocast(self.device, self.training and self.use_student_bf16):
            return self.student(x).float()  # (a no-op in fp32)

    def _teacher_out(self, batch: dict) -> torch.Tensor:
        if "teacher_logits" in batch:  # from the soft-target cache (always, for validation: `SoftTargets`)
            return batch["teacher_logits"].float()
        return self.teacher_logits(batch["teacher"])

    def loss(self, batch: dict, student_logits: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
        return distillation_loss(student_logits, teacher_logits, batch["label"], self.temperature, self.soft_weight,
                                 self.hard_weight, self.soft_loss, batch.get("label_mixed"), batch.get("lam"))

    def step_loss(self, batch: dict) -> torch.Tensor:
        # soft_weight 0 is the label-only baseline: the teacher is only scored on the validation folder.
        t_logits = self._teacher_out(batch) if self.soft_weight else None  # B,C
        return self.loss(batch, self(batch["student"]), t_logits)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.step_loss(batch)
        if not torch.isfinite(loss):  # stop before the optimizer step spreads NaN into the weights
            raise FloatingPointError(f"the distillation loss is {loss.item()} at step {self.global_step}; "
                                     f"try a lower distill.optimizer.lr or distill.teacher_bf16=false")
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0 or self.trainer.fast_dev_run:
            # only on the steps the loggers write (Lightning's rule): self.log's cost per call is a visible
            # share of a small student's step (BENCHMARKS.md, "Speed")
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        t_logits = self._teacher_out(batch)
        s_logits = self(batch["student"])
        labels = batch["label"]
        self.val_top1.update(s_logits, labels)
        self.val_top5.update(s_logits, labels)
        self.val_teacher_top1.update(t_logits, labels)
        self.val_agreement.update(s_logits, t_logits.argmax(-1))
        kl = F.kl_div(F.log_softmax(s_logits, -1), F.log_softmax(t_logits, -1), log_target=True,
                      reduction="none").sum(-1)  # B: KL(teacher || student) at T=1, per image
        self.val_kl.update(kl)

    def on_validation_epoch_end(self) -> None:
        top1, agreement = self.val_top1.compute(), self.val_agreement.compute()
        teacher_top1 = self.val_teacher_top1.compute()
        if not self.trainer.sanity_checking:  # a two-batch sanity pass is not an epoch's result
            if not self._reported_teacher:
                self._report_teacher(float(teacher_top1))
            self.val_top1_best.update(top1)
            self.val_agreement_best.update(agreement)
            self.log_dict({"val/top1": top1, "val/agreement": agreement}, prog_bar=True)
            self.log_dict({
                "val/top5": self.val_top5.compute(), "val/kl": self.val_kl.compute(),
                "val/teacher_top1": teacher_top1, "val/top1_gap": teacher_top1 - top1,
                "val/top1_best": self.val_top1_best.compute(), "val/agreement_best": self.val_agreement_best.compute(),
            })
        for metric in (self.val_top1, self.val_top5, self.val_agreement, self.val_teacher_top1, self.val_kl):
            metric.reset()

    def _report_teacher(self, top1: float) -> None:
        """Once per run: the ceiling, and a warning when the teacher is barely better than chance."""
        self._reported_teacher = True
        chance = 1 / self.student.num_classes
        log.info("teacher top-1 on the validation folder: %.4f (chance %.4f)", top1, chance)
        recorded = getattr(self.teacher, "recorded_top1", None)
        if top1 < max(1.5 * chance, chance + 0.05):
            log.warning("the teacher's top-1 (%.3f) is near chance (%.3f): the usual causes are a wrong "
                        "normalisation (teacher.mean/std), a wrong class order (classes.txt) or wrong weights",
                        top1, chance)
        elif recorded is not None and top1 < recorded - 0.1:
            log.warning("the teacher's top-1 here (%.3f) is far below its top-1 when trained (%.3f): check its "
                        "normalisation (teacher.mean/std), resolution (teacher.img_size) and class order",
                        top1, recorded)

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_fn(weight_decay_groups(self.student, self.weight_decay))
        if self.scheduler_fn is None:
            return {"optimizer": optimizer}
        scheduler = build_schedule(self.scheduler_fn, optimizer, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
