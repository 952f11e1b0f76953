"""Knowledge-distillation losses. Each soft-target loss is `f(student_logits, teacher_logits, T) -> scalar`
(B x C logits, averaged over the batch), chosen by name with `distill.loss` (`LOSSES`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton, Vinyals & Dean 2015 (arXiv 1503.02531): T^2 * KL(softmax(t/T) || softmax(s/T)), summed over
    classes, averaged over the batch.

    The T^2 keeps the soft term's gradient scale independent of T (its gradients shrink as 1/T^2),
    so a change of temperature does not silently rescale the learning rate.
    """
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # B,C
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)  # B,C
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """z-score of each row: (z - mean(z)) / std(z), with the unbiased std as in the authors' code."""
    z = logits.float()
    return (z - z.mean(-1, keepdim=True)) / (z.std(-1, keepdim=True) + eps)


def standardized_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """Sun et al., "Logit Standardization in Knowledge Distillation" (CVPR 2024): Hinton's loss on z-scored
    logits, T^2 * KL(softmax(Z(t)/T) || softmax(Z(s)/T)). The student matches the teacher's logit *shape*,
    not its range, which a small student may not be able to reach. Z(z) has unit std, so T is the logits'
    effective spread: the paper's T are 2-4 where Hinton's would be 4-8."""
    return soft_target_loss(standardize(student_logits), standardize(teacher_logits), temperature)


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of a with the same row of b."""
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)


def dist_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Huang et al., "Knowledge Distillation from A Stronger Teacher" (DIST, NeurIPS 2022), beta = gamma = 1:
    T^2 * [(1 - mean_b pearson(p_s[b,:], p_t[b,:])) + (1 - mean_c pearson(p_s[:,c], p_t[:,c]))], p = softmax(z/T).
    Matching correlations (inter-class: each image's ranking of classes; intra-class: each class's ranking
    of the batch's images) rather than values leaves the student free in scale and shift."""
    s = F.softmax(student_logits.float() / temperature, dim=-1)  # B,C
    t = F.softmax(teacher_logits.float() / temperature, dim=-1)
    inter = 1 - _pearson(s, t).mean()
    intra = 1 - _pearson(s.T, t.T).mean()
    return temperature**2 * (inter + intra)


def logit_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Kim et al., "Comparing Kullback-Leibler Divergence and Mean Squared Error Loss in Knowledge
    Distillation" (IJCAI 2021): mean over batch and classes of (z_s - z_t)^2, the T -> infinity limit of
    Hinton's loss (up to a constant factor). T is not used."""
    return F.mse_loss(student_logits.float(), teacher_logits.float())


LOSSES = {"kl": soft_target_loss, "kl_std": standardized_kl_loss, "dist": dist_loss, "mse": logit_mse_loss}


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor, labels_mixed: torch.Tensor | None = None,
                    lam: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor | None:
    """Cross-entropy on the samples whose labels are known (label >= 0); None when there are none.

    For mixed images (`data.mix`) the target is the mix: lam * CE(label) + (1 - lam) * CE(labels_mixed),
    on the samples whose two labels are both known."""
    known = labels >= 0
    if labels_mixed is not None:
        known &= labels_mixed >= 0
    if not known.any():
        return None
    logits = student_logits[known].float()
    loss = F.cross_entropy(logits, labels[known], reduction="none", label_smoothing=label_smoothing)  # B'
    if labels_mixed is not None:
        w = lam[known].float()
        loss = w * loss + (1 - w) * F.cross_entropy(logits, labels_mixed[known], reduction="none",
                                                    label_smoothing=label_smoothing)
    return loss.mean()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                      labels: torch.Tensor | None, temperature: float, soft_weight: float = 1.0,
                      hard_weight: float = 0.0, soft_loss=soft_target_loss, labels_mixed: torch.Tensor | None = None,
                      lam: torch.Tensor | None = None) -> torch.Tensor:
    """soft_weight * soft_loss + hard_weight * `hard_label_loss` on the labels that exist.

    The hard term is skipped (not zero-weighted NaN) when no sample in the batch carries a label. With
    soft_weight 0 (the label-only baseline) the teacher's logits are not needed and may be None.
    """
    loss = soft_weight * soft_loss(student_logits, teacher_logits, temperature) if soft_weight \
        else student_logits.new_zeros(())
    if hard_weight and labels is not None:
        hard = hard_label_loss(student_logits, labels, labels_mixed, lam)
        if hard is not None:
            loss = loss + hard_weight * hard
    return loss
