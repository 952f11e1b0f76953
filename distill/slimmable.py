"""Distillation into a slimmable student (Yu & Huang, ICCV 2019): the sandwich rule for each step, and
every width taken out as a plain student at the end of the run.

The student is any module with `sandwich_widths()`, `at_width(alpha)`, `alpha_max`, `widths` and
`extract(alpha)` (e.g. `students.slimmable.SlimmableMobileNetV1`); nothing here imports it.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.fabric.utilities import move_data_to_device
from torch.optim.swa_utils import update_bn

from .module import DistillModule

log = logging.getLogger(__name__)
# distill.narrow_targets -> the targets a narrower width learns from (a mean of their losses)
NARROW_TARGETS = {"teacher": ("teacher",), "widest": ("widest",), "both": ("teacher", "widest")}


class SlimmableDistillModule(DistillModule):
    """Each step runs the widest width, `student.sandwich` random widths and the narrowest on the same batch
    and sums their losses (the paper accumulates their gradients: the same update). The widest width
    learns from the teacher's soft targets (and labels, as `DistillModule`).

    Args:
        narrow_targets: what the narrower widths learn from: "teacher" (the same targets as the widest),
            "widest" (in-place distillation: the widest width's logits of this step, detached) or "both"
            (the mean of the two losses).
        Others as `DistillModule`; validation scores the widest width.
    """

    def __init__(self, *args, narrow_targets: str = "teacher", **kwargs):
        super().__init__(*args, **kwargs)
        if narrow_targets not in NARROW_TARGETS:
            raise ValueError(f"distill.narrow_targets={narrow_targets!r}: use one of {', '.join(NARROW_TARGETS)}")
        if not hasattr(self.student, "sandwich_widths"):
            raise ValueError("distill=slimmable needs a slimmable student: use student=slimmable_mobilenet_v1")
        self.narrow_sources = NARROW_TARGETS[narrow_targets]

    def step_loss(self, batch: dict) -> torch.Tensor:
        t_logits = self._teacher_out(batch) if self.soft_weight else None  # B,C
        widest, *narrower = self.student.sandwich_widths()
        try:
            s_logits = self._at_width(widest, batch)
            total = self.loss(batch, s_logits, t_logits)  # the widest width learns from the teacher
            targets = {"teacher": t_logits, "widest": s_logits.detach()}  # "widest": in-place distillation
            sources = self.narrow_sources
            for width in narrower:
                s_logits = self._at_width(width, batch)
                total = total + sum(self.loss(batch, s_logits, targets[k]) for k in sources) / len(sources)
        finally:
            self.student.at_width(self.student.alpha_max)
        return total

    def _at_width(self, width: float, batch: dict) -> torch.Tensor:
        self.student.at_width(width)
        return self(batch["student"])


class TakeOutWidths(pl.Callback):
    """When training ends, each of a slimmable student's `widths` as a plain student: taken out
    (`extract`), its BatchNorm statistics recalibrated on `calibration_images` training images seen at that
    width (torch's `update_bn`: a cumulative average, not the running one), and scored on the validation
    folder as the run's own student is. train.py writes them (widths/<alpha>/student.*) and their rows
    into summary.json.

    Args:
        cost_fn: `(model, img_size, latency=...) -> dict`, as `RunReport`'s.
        calibration_images: training images per width for its statistics.
    """

    def __init__(self, cost_fn: Callable[..., dict], calibration_images: int = 2000):
        if calibration_images < 1:
            raise ValueError(f"callbacks.widths.calibration_images={calibration_images} must be >= 1")
        self.cost_fn, self.calibration_images = cost_fn, calibration_images
        self.results: list[dict] = []

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not hasattr(module.student, "extract"):
            return
        data = trainer.datamodule
        img_size = module.student.pretrained_cfg["input_size"][-1]
        for alpha in module.student.widths:
            plain = module.student.extract(alpha).to(memory_format=module.memory_format)
            update_bn(self._images(data.train_dataloader(), module), plain)
            plain.eval()
            final = self._score(plain, module, data.val_dataloader())
            self.results.append({"alpha": alpha, "img_size": img_size, "model": plain,
                                 "final": final, "cost": self.cost_fn(plain, img_size, latency=False)})
            log.info("width %g taken out: %s", alpha, "  ".join(f"{k} {v:.4f}" for k, v in (final or {}).items()))

    def _images(self, loader, module) -> Iterator[torch.Tensor]:
        seen = 0
        for batch in loader:  # (one epoch of views at most: smaller folders calibrate on all they have)
            images = batch["student"][: self.calibration_images - seen].to(module.device)
            seen += len(images)
            yield module.normalize(images, "student")
            if seen >= self.calibration_images:
                return

    @torch.no_grad()
    def _score(self, plain: torch.nn.Module, module, loader) -> dict | None:
        """top-1, agreement with the teacher, its top-1 and KL(teacher || student): `DistillModule`'s metrics."""
        right = agree = teacher_right = total = 0
        kl = 0.0
        for batch in loader:
            batch = move_data_to_device(batch, module.device)
            t_logits = module._teacher_out(batch)
            s_logits = plain(module.normalize(batch["student"], "student")).float()
            labels, guess = batch["label"], s_logits.argmax(-1)
            right += int((guess == labels).sum())
            agree += int((guess == t_logits.argmax(-1)).sum())
            teacher_right += int((t_logits.argmax(-1) == labels).sum())
            kl += float(F.kl_div(F.log_softmax(s_logits, -1), F.log_softmax(t_logits, -1), log_target=True,
                                 reduction="sum"))
            total += len(labels)
        if not total:
            return None
        return {"val/top1": right / total, "val/agreement": agree / total, "val/teacher_top1": teacher_right / total,
                "val/kl": kl / total}
