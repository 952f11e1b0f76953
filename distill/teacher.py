"""The frozen teacher as distillation runs it, online in a training step or once for the soft-target cache."""
from __future__ import annotations

import torch
from torch import nn

from .normalize import Normalize
from .runtime import bf16_autocast, bf16_fast


class FrozenTeacher:
    """uint8 images in, fp32 logits out: the teacher's own mean/std and memory format, bf16 autocast where
    `bf16` says ("auto": where bf16 is native on the teacher's device), no autograd.

    A plain object over modules that its owner (`DistillModule`) registers, so it follows them to the device.
    """

    def __init__(self, model: nn.Module, normalize: Normalize, bf16: bool | str = "auto"):
        if bf16 not in (True, False, "auto"):
            raise ValueError(f"distill.teacher_bf16={bf16!r}: use true, false or auto")
        self.model, self.normalize, self.bf16_setting = model, normalize, bf16

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def bf16(self) -> bool:
        return bf16_fast(self.device.type) if self.bf16_setting == "auto" else bool(self.bf16_setting)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = self.device
        with torch.inference_mode(), bf16_autocast(device, self.bf16):
            logits = self.model(self.normalize(images.to(device))).float()
        return logits.clone()  # an ordinary tensor again, usable as a constant in autograd
