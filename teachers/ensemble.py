"""An ensemble teacher: members' probabilities averaged at the distillation temperature."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from torch import nn

from distill.normalize import Normalize


class TeacherEnsemble(nn.Module):
    """Average of `members`' softmax(z / T), returned as T * log(mean p), so that softmax(output / T) is
    exactly the averaged distribution the student is trained on.

    Each member keeps its own resolution and normalisation: the ensemble takes the crop in [0, 1] at the
    largest member resolution and resizes and normalises it per member.

    Args:
        members: frozen timm classifiers with the same classes (e.g. from `create_teacher`).
        temperature: the distillation temperature T (pass `${distill.temperature}`).
    """

    def __init__(self, members: Sequence[nn.Module], temperature: float):
        super().__init__()
        if len(members) < 2:
            raise ValueError("teacher ensemble: give at least two members")
        counts = {m.num_classes for m in members}
        names = {tuple(m.pretrained_cfg.get("label_names") or ()) for m in members}
        if len(counts) > 1 or len(names) > 1:
            raise ValueError(f"teacher ensemble members disagree on their classes ({sorted(counts)} outputs)")
        self.members = nn.ModuleList(members).requires_grad_(False).eval()
        self.temperature, self.num_classes = temperature, counts.pop()
        self.sizes, configs = [], [resolve_model_data_config(m) for m in members]
        for i, cfg in enumerate(configs):
            self.sizes.append(cfg["input_size"][-1])
        self.normalizers = nn.ModuleList(Normalize(m, value_range=1.0) for m in members)
        size = max(self.sizes)
        self.pretrained_cfg = dict(input_size=(3, size, size), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                   crop_pct=1.0, interpolation="bilinear", label_names=names.pop() or None)
        self.teacher_name = "ensemble(" + ", ".join(getattr(m, "teacher_name", "?") for m in members) + ")"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: B,3,S,S in [0, 1]
        probs = 0.0
        for i, member in enumerate(self.members):
            xi = x if x.shape[-1] == self.sizes[i] else F.interpolate(
                x, size=(self.sizes[i], self.sizes[i]), mode="bilinear", antialias=True, align_corners=False)
            xi = self.normalizers[i](xi)
            probs = probs + F.softmax(member(xi).float() / self.temperature, dim=-1)
        return self.temperature * torch.log(probs / len(self.members) + 1e-12)  # B,C
