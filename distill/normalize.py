"""uint8 images -> a model's input: one helper for every model (student, teacher, ensemble member)."""
from __future__ import annotations

import torch
from timm.data import resolve_model_data_config
from torch import nn


class Normalize(nn.Module):
    """(x / range - mean) / std with the model's timm data config, as one multiply-add.

    Args:
        model: a timm classifier (its `pretrained_cfg` / data config gives mean and std).
        memory_format: the input's layout: the batch is laid out first, so the float copy inherits it
            (one float copy, not two).
        value_range: 255 for uint8 batches; 1 for float images already in [0, 1].
    """

    def __init__(self, model: nn.Module, memory_format: torch.memory_format = torch.contiguous_format,
                 value_range: float = 255.0):
        super().__init__()
        cfg = resolve_model_data_config(model)
        mean, std = (torch.tensor(cfg[key], dtype=torch.float32).view(1, 3, 1, 1) for key in ("mean", "std"))
        self.register_buffer("scale", 1 / (value_range * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)
        self.memory_format = memory_format

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.contiguous(memory_format=self.memory_format)
        x = x.float() if x.dtype != torch.float32 else x.clone()
        return x.mul_(self.scale).add_(self.shift)  # B,3,S,S
