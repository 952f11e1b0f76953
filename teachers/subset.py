"""A teacher restricted to the user's classes: an ImageNet-1k teacher distils a 10-class student."""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


class ClassSubset(nn.Module):
    """`teacher`'s logits at `indices`, in that order. The restriction comes before any softmax, so the
    subset's probabilities renormalise over the user's classes (the other classes never compete)."""

    def __init__(self, teacher: nn.Module, indices: Sequence[int]):
        super().__init__()
        self.teacher = teacher
        self.register_buffer("indices", torch.tensor(list(indices), dtype=torch.long))  # (in the cache's fingerprint)
        self.class_indices, self.num_classes = [int(i) for i in indices], len(indices)
        names = teacher.pretrained_cfg.get("label_names")
        self.pretrained_cfg = {**teacher.pretrained_cfg, "num_classes": self.num_classes,
                               "label_names": tuple(names[i] for i in self.class_indices) if names else None}
        self.teacher_name = f"{getattr(teacher, 'teacher_name', type(teacher).__name__)}" \
                            f"[{self.num_classes} of {teacher.num_classes} classes]"
        self.recorded_top1 = None  # (its top-1 when trained was over all its classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)[:, self.indices]  # B,k


def class_subset(teacher: nn.Module, classes: Sequence[int | str]) -> ClassSubset:
    """Restrict `teacher` to `classes`: output indices, or names from its class list."""
    names = list(teacher.pretrained_cfg.get("label_names") or [])
    indices = []
    for c in classes:
        if isinstance(c, int) or (isinstance(c, str) and c.isdigit()):
            if not 0 <= int(c) < teacher.num_classes:
                raise ValueError(f"teacher.classes: {c} is not an output of a {teacher.num_classes}-class teacher")
            indices.append(int(c))
        elif c in names:
            indices.append(names.index(c))
        else:
            raise ValueError(f"teacher.classes: {c!r} is not one of the teacher's class names"
                             + ("" if names else " (it has none: give output indices)"))
    if len(set(indices)) != len(indices):
        raise ValueError(f"teacher.classes names a class twice: {list(classes)}")
    return ClassSubset(teacher, indices)


def subset_for_folders(teacher: nn.Module, folders: Sequence[str]) -> nn.Module:
    """The teacher restricted to a labeled folder's classes when they are a strict subset of its class
    names (e.g. Imagenette's 10 folders under an ImageNet-1k teacher); otherwise the teacher itself."""
    names = set(teacher.pretrained_cfg.get("label_names") or [])
    if not names or not set(folders) < names:
        return teacher
    log.info("teacher restricted to the %d classes of the validation folder (of its %d)", len(folders),
             teacher.num_classes)
    return class_subset(teacher, sorted(folders))
