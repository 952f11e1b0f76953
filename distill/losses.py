"""Knowledge-distillation losses (Hinton, Vinyals & Dean 2015, arXiv 1503.02531)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes, averaged over the batch.

    The T^2 keeps the soft term's gradient scale independent of T (its gradients shrink as 1/T^2),
    so a change of temperature does not silently rescale the learning rate.
    """
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # B,C
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)  # B,C
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                      labels: torch.Tensor | None, temperature: float, soft_weight: float = 1.0,
                      hard_weight: float = 0.0) -> torch.Tensor:
    """soft_weight * soft_target_loss + hard_weight * cross-entropy on the labels that exist (label >= 0).

    The hard term is skipped (not zero-weighted NaN) when no sample in the batch carries a label. With
    soft_weight 0 (the label-only baseline) the teacher's logits are not needed and may be None.
    """
    loss = soft_weight * soft_target_loss(student_logits, teacher_logits, temperature) if soft_weight \
        else student_logits.new_zeros(())
    if hard_weight and labels is not None:
        known = labels >= 0
        if known.any():
            loss = loss + hard_weight * F.cross_entropy(student_logits[known].float(), labels[known])
    return loss
