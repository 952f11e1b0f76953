"""Optimizer parameter groups and the learning-rate schedule shared by distillation and teacher training."""
from __future__ import annotations

import math

import torch
from torch import nn


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay full conv and linear weights only: depthwise filters, norms and biases have few parameters
    and the MobileNets paper recommends little or no decay on them."""
    depthwise = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
    decay, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 and id(p) not in depthwise else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  min_lr_ratio: float = 0.01) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_fraction` of the steps, then cosine decay to `min_lr_ratio` x the base LR."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
