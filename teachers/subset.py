"""A teacher restricted to the user's classes: an ImageNet-1k teacher distils a 10-class student."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Sequence

import torch
from timm.data import ImageNetInfo, infer_imagenet_subset
from torch import nn

log = logging.getLogger(__name__)


class ClassSubset(nn.Module):
    """`teacher`'s logits at `indices`, in that order. The restriction comes before any softmax, so the
    subset's probabilities renormalise over the user's classes (the other classes never compete)."""

    def __init__(self, teacher: nn.Module, indices: Sequence[int], label_names: Sequence[str] | None = None):
        super().__init__()
        self.teacher = teacher
        self.register_buffer("indices", torch.tensor(list(indices), dtype=torch.long))  # (in the cache's fingerprint)
        self.class_indices, self.num_classes = [int(i) for i in indices], len(indices)
        names = teacher.pretrained_cfg.get("label_names")
        label_names = label_names or ([names[i] for i in self.class_indices] if names else None)
        self.pretrained_cfg = {**teacher.pretrained_cfg, "num_classes": self.num_classes,
                               "label_names": tuple(label_names) if label_names else None}
        self.teacher_name = f"{getattr(teacher, 'teacher_name', type(teacher).__name__)}" \
                            f"[{self.num_classes} of {teacher.num_classes} classes]"
        self.recorded_top1 = None  # (its top-1 when trained was over all its classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)[:, self.indices]  # B,k


def _key(name: str) -> str:
    return name.replace("_", " ").strip().lower()


def output_names(teacher: nn.Module) -> list[set[str]]:
    """The names each output answers to: its class list's entry, or, for an ImageNet classifier without
    one (timm's hub models), its WordNet id and synonyms from timm's `ImageNetInfo`, so that folders named
    `n01440764`, `tench` or `English_springer` find their class. Compared case-blind, `_` as a space."""
    names = teacher.pretrained_cfg.get("label_names")
    if names:
        return [{_key(n)} for n in names]
    subset = infer_imagenet_subset(teacher)
    if subset is None:
        return []
    info = ImageNetInfo(subset)
    return [{_key(wnid), *(_key(s) for s in description.split(","))}
            for wnid, description in zip(info.label_names(), info.label_descriptions())]


def _outputs_by_name(teacher: nn.Module) -> dict[str, list[int]]:
    lookup = defaultdict(list)
    for i, aliases in enumerate(output_names(teacher)):
        for alias in aliases:
            lookup[alias].append(i)
    return lookup


def class_subset(teacher: nn.Module, classes: Sequence[int | str]) -> ClassSubset:
    """Restrict `teacher` to `classes`: output indices, or names its outputs answer to (`output_names`)."""
    lookup = _outputs_by_name(teacher)
    indices, names = [], []
    for c in classes:
        if isinstance(c, int) or (isinstance(c, str) and c.isdigit()):
            if not 0 <= int(c) < teacher.num_classes:
                raise ValueError(f"teacher.classes: {c} is not an output of a {teacher.num_classes}-class teacher")
            indices.append(int(c))
            names.append(None)
        elif len(lookup.get(_key(c), ())) == 1:  # (user's spelling kept: the folders are matched to it)
            indices.append(lookup[_key(c)][0])
            names.append(c)
        elif _key(c) in lookup:
            raise ValueError(f"teacher.classes: {c!r} names several of the teacher's outputs "
                             f"{lookup[_key(c)]}; give the output index instead")
        else:
            raise ValueError(f"teacher.classes: {c!r} is not one of the teacher's class names"
                             + ("" if lookup else " (it has none: give output indices)"))
    if len(set(indices)) != len(indices):
        raise ValueError(f"teacher.classes names a class twice: {list(classes)}")
    own = teacher.pretrained_cfg.get("label_names")
    label_names = [n or (own[i] if own else None) for n, i in zip(names, indices)]
    return ClassSubset(teacher, indices, label_names if all(label_names) else None)


def subset_for_folders(teacher: nn.Module, folders: Sequence[str]) -> nn.Module:
    """The teacher restricted to a labeled folder's classes when there are fewer folders than outputs
    (e.g. Imagenette's 10 folders under an ImageNet-1k teacher); otherwise the teacher itself.

    Raises ValueError when a folder names none of the outputs, or several."""
    lookup = _outputs_by_name(teacher)
    if len(folders) >= teacher.num_classes or not lookup:
        return teacher  # (the data module checks folder names against a class list, if there is one)
    unmatched = [f for f in folders if len(lookup.get(_key(f), ())) != 1]
    if unmatched:
        raise ValueError(f"class folders {unmatched[:5]} name {'several' if _key(unmatched[0]) in lookup else 'none'} "
                         f"of the teacher's {teacher.num_classes} outputs; rename them or give teacher.classes "
                         f"(output indices, in the folders' sorted order)")
    log.info("teacher restricted to the %d classes of the validation folder (of its %d)", len(folders),
             teacher.num_classes)
    return class_subset(teacher, sorted(folders))
