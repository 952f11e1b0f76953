"""Optimizer parameter groups and the learning-rate schedule shared by distillation and teacher training."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .errors import UserError


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


def build_schedule(scheduler_fn: Callable, optimizer: torch.optim.Optimizer,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """`scheduler_fn(optimizer, total_steps=...)`, the one way the modules and the time budget lay a schedule
    over a run. torch's OneCycleLR divides by zero when its warm-up is exactly one step (pct_start x steps
    == 1): a one-line error instead of a traceback from inside torch."""
    try:
        return scheduler_fn(optimizer, total_steps=total_steps)
    except ZeroDivisionError as err:
        raise UserError(f"the learning-rate scheduler (distill.scheduler / finetune.scheduler) cannot spread its "
                        f"warm-up over {total_steps} training steps (a one-cycle warm-up of one step divides by "
                        f"zero): train a few steps more or fewer, or change its pct_start") from err
