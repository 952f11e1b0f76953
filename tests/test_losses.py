import math

import pytest
import torch

from distill.losses import distillation_loss, soft_target_loss


def reference_kd(s: torch.Tensor, t: torch.Tensor, T: float) -> float:
    """The formula written out: T^2 * mean_b sum_c p_t log(p_t / p_s), p = softmax(z / T)."""
    total = 0.0
    for sb, tb in zip(s.tolist(), t.tolist()):
        zs = [math.exp(v / T) for v in sb]
        zt = [math.exp(v / T) for v in tb]
        ps = [v / sum(zs) for v in zs]
        pt = [v / sum(zt) for v in zt]
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    return T * T * total / len(s)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 10.0])
def test_soft_target_loss_matches_formula(T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g) * 3
    assert soft_target_loss(s, t, T).item() == pytest.approx(reference_kd(s, t, T), rel=1e-5)


def test_golden_value():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 2.0, 1.0]])
    # By hand, T=2: p_t = softmax([1.5, 1, .5]) = [.5065, .3072, .1863], p_s the reverse; the log-ratios
    # are +1, 0, -1, so KL = .5065 - .1863 = .3202, and T^2 * KL = 1.2806.
    assert soft_target_loss(s, t, 2.0).item() == pytest.approx(1.2806, abs=1e-4)


def test_t_squared_keeps_gradient_scale():
    """Gradients of the bare KL shrink ~1/T^2; with T^2 applied their scale stays put at high T."""
    g = torch.Generator().manual_seed(1)
    t = torch.randn(64, 10, generator=g)
    norms = {}
    for T in (4.0, 8.0):
        s = torch.randn(64, 10, generator=torch.Generator().manual_seed(2)).requires_grad_()
        soft_target_loss(s, t, T).backward()
        norms[T] = s.grad.norm().item()
    # d/ds [T^2 KL] = T (p_s - p_t); at high T, p_s - p_t ~ (s - t) / (C T), so the norm is ~constant.
    assert norms[8.0] / norms[4.0] == pytest.approx(1.0, abs=0.15)


def test_batch_mean_not_sum():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    single = soft_target_loss(s, t, 3.0)
    doubled = soft_target_loss(torch.cat([s, s]), torch.cat([t, t]), 3.0)
    assert doubled.item() == pytest.approx(single.item(), rel=1e-6)


def test_identical_logits_give_zero():
    x = torch.randn(3, 5)
    assert soft_target_loss(x, x.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_hard_weight_zero_ignores_labels():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    soft = soft_target_loss(s, t, 4.0)
    assert distillation_loss(s, t, labels, 4.0, hard_weight=0.0).item() == pytest.approx(soft.item())
    assert distillation_loss(s, t, None, 4.0).item() == pytest.approx(soft.item())


def test_hard_term_uses_labelled_samples_only():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    labels = torch.tensor([1, -1, 3, -1])
    got = distillation_loss(s, t, labels, 2.0, soft_weight=0.5, hard_weight=0.3)
    ce = torch.nn.functional.cross_entropy(s[[0, 2]], labels[[0, 2]])
    assert got.item() == pytest.approx(0.5 * soft_target_loss(s, t, 2.0).item() + 0.3 * ce.item(), rel=1e-6)
    unlabeled = distillation_loss(s, t, torch.full((4,), -1), 2.0, hard_weight=1.0)
    assert torch.isfinite(unlabeled)
